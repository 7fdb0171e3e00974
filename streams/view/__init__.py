"""The Redis view of current tiers."""
