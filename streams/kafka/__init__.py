"""Kafka clients and topics: connection settings for every client and the topics tierstream uses."""
