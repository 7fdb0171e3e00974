"""Dev tooling: the local Kafka broker, `tierstream demo` and the event simulator."""
