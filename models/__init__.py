"""Data contracts of tierstream: input events, policy schema, customer state and output events."""
