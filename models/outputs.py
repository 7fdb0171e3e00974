"""Output events (design section 5): CloudEvents 1.0 envelopes around tier and churn decisions."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

CHURN_TYPES = ("tierstream.churn.warning", "tierstream.churn.recovered")
OutputType = Literal["tierstream.tier.assigned", "tierstream.tier.upgraded",
                     "tierstream.tier.downgraded", "tierstream.tier.downgrade_warning",
                     "tierstream.churn.warning", "tierstream.churn.recovered"]
MetricValue = float | int | str


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PolicyRef(_Frozen):
    name: str
    version: str


class DecisionData(_Frozen):
    """Why it happened: the rule that decided and the metric values it saw."""

    customer_id: str
    from_tier: str | None
    to_tier: str | None
    policy: PolicyRef
    rule: str
    reason: str
    metrics: dict[str, MetricValue]
    due_at: str | None = None      # downgrade_warning: when the downgrade will happen
    churn_rule: str | None = None  # churn events: the rule that opened the episode


class OutputEvent(_Frozen):
    """A CloudEvents 1.0 event in structured JSON mode; Kafka key = subject = customer id."""

    specversion: Literal["1.0"] = "1.0"
    id: str
    source: str
    type: OutputType
    subject: str
    time: str
    sequence: str                  # CloudEvents sequence extension: per-customer counter
    datacontenttype: Literal["application/json"] = "application/json"
    data: DecisionData

    @property
    def topic_kind(self) -> Literal["tier-changes", "churn-warnings"]:
        return "churn-warnings" if self.type in CHURN_TYPES else "tier-changes"
