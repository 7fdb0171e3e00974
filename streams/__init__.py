"""The imperative shell: CLI, file readers and (later) the faust runtime around the pure core."""
