"""The imperative shell around the pure core: CLI, file readers, faust workers, Redis view and
HTTP API."""
