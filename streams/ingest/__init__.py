"""`tierstream ingest`: an HTTP ingress that produces shops' and trackers' events to the inputs."""
