"""The error tree: every failure tierstream raises on purpose is a TierEngineError.

    TierEngineError
    ├── InvalidEventError (ValueError)      an input event broke the contract; it is dead-lettered
    ├── PolicyError (ValueError)            a policy file is wrong; names file, line and field
    │   └── PolicyEvaluationError           a valid policy failed at run time on real metrics
    ├── ConnectError (RuntimeError)         Kafka or Redis unreachable, or refusing our credentials
    ├── InvalidTierRecordError (ValueError) a customer-tiers record the Redis view cannot use
    ├── ModelFitError (ValueError)          a lifetime-value model cannot be fitted or applied
    └── RebuildError (RuntimeError)         the Redis view cannot be rebuilt from the topic
"""

from __future__ import annotations


class TierEngineError(Exception):
    """Root of every error tierstream raises on purpose."""


class InvalidEventError(TierEngineError, ValueError):
    """An input event that breaks the contract; `reason` is short enough for a metric label."""

    def __init__(self, message: str, reason: str = "invalid") -> None:
        super().__init__(message)
        self.reason = reason


class PolicyError(TierEngineError, ValueError):
    """A policy that cannot be loaded, with where it went wrong."""

    def __init__(self, message: str, file: str | None = None, line: int | None = None,
                 field: str | None = None) -> None:
        self.message, self.file, self.line, self.field = message, file, line, field
        where = ":".join(str(p) for p in (file, line) if p is not None)
        prefix = f"{where}: " if where else ""
        at = f"{field}: " if field else ""
        super().__init__(f"{prefix}{at}{message}")


class PolicyEvaluationError(PolicyError):
    """A loaded policy's condition failed on real metric values (a policy bug, not bad input)."""


class ConnectError(TierEngineError, RuntimeError):
    """Kafka or Redis cannot be reached or refuses our credentials (never shows a secret)."""


class InvalidTierRecordError(TierEngineError, ValueError):
    """A `customer-tiers` record that is not in the shape the Redis view writes."""


class ModelFitError(TierEngineError, ValueError):
    """A lifetime-value model that cannot be fitted on the data given, or used with its values."""


class RebuildError(TierEngineError, RuntimeError):
    """The Redis view cannot be rebuilt from the compacted topic."""
