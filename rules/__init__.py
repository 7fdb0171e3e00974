"""The pure tier engine: policy compilation, metrics, tier and churn decisions. No I/O, no clock."""
