"""The imperative shell around the pure core, by role: worker/ (the faust worker, HTTP API),
kafka/ (clients, topics), view/ (Redis), cli/ (commands, file readers), dev/ (local Kafka, demo,
simulator); settings.py and policies.py are shared by all."""
