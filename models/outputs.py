"""Output events (design section 5): CloudEvents 1.0 envelopes around tier, churn, follow-up and
axis decisions.

The pydantic models are the contract (the JSON Schemas are generated from them). The engine
builds the msgspec structs below (`Output`), about twenty times cheaper to build and write; they
write byte for byte what the models write (tests/test_schema.py).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import msgspec
from msgspec.structs import replace
from pydantic import BaseModel, ConfigDict, Field

from models.instants import format_instant
from models.state import CustomerState

CHURN_TYPES = ("tierstream.churn.warning", "tierstream.churn.recovered")
FOLLOWUP_TYPES = ("tierstream.followup.due", "tierstream.followup.overdue",
                  "tierstream.followup.done")
AXIS_TYPES = ("tierstream.axis.assigned", "tierstream.axis.upgraded",
              "tierstream.axis.downgraded", "tierstream.axis.downgrade_warning")
OutputType = Literal["tierstream.tier.assigned", "tierstream.tier.upgraded",
                     "tierstream.tier.downgraded", "tierstream.tier.downgrade_warning",
                     "tierstream.churn.warning", "tierstream.churn.recovered",
                     "tierstream.followup.due", "tierstream.followup.overdue",
                     "tierstream.followup.done", "tierstream.axis.assigned",
                     "tierstream.axis.upgraded", "tierstream.axis.downgraded",
                     "tierstream.axis.downgrade_warning"]
MetricValue = float | int | str


class _Frozen(BaseModel):
    # Serialized JSON always has every field, defaults included: the schemas say so.
    model_config = ConfigDict(frozen=True, extra="forbid",
                              json_schema_serialization_defaults_required=True)


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


class FollowupData(_Frozen):
    """A follow-up of the customer's tier's plan (policy `followup`) falling due, overdue or
    done."""

    customer_id: str
    tier: str
    policy: PolicyRef
    cadence: str                   # the plan's `every`, e.g. "14d"
    channel: Literal["personal", "automated"]
    due_at: str                    # when the follow-up fell due
    last_contact_at: str | None    # the latest counting contact (done: the one that closed it)
    owner: str | None              # the owner the latest contact carrying one named
    reason: str


class AxisChangeData(_Frozen):
    """A customer's class on one of the policy's further axes (policy `axes`, e.g. lifecycle)
    assigned, moved or about to move; the value tier's own events are tier.*."""

    customer_id: str
    axis: str
    from_class: str | None
    to_class: str
    policy: PolicyRef
    rule: str
    reason: str
    metrics: dict[str, MetricValue]
    due_at: str | None = None      # downgrade_warning: when the move down will happen


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
    data: DecisionData | FollowupData | AxisChangeData

    @property
    def topic_kind(self) -> Literal["tier-changes", "churn-warnings"]:
        return "churn-warnings" if self.type in CHURN_TYPES else "tier-changes"


class PolicyName(msgspec.Struct, frozen=True, gc=False):
    """PolicyRef."""

    name: str
    version: str


class Decision(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """DecisionData."""

    customer_id: str
    from_tier: str | None
    to_tier: str | None
    policy: PolicyName
    rule: str
    reason: str
    metrics: dict[str, MetricValue]
    due_at: str | None = None
    churn_rule: str | None = None


class Followup(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """FollowupData."""

    customer_id: str
    tier: str
    policy: PolicyName
    cadence: str
    channel: str
    due_at: str
    last_contact_at: str | None
    owner: str | None
    reason: str


class AxisChange(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """AxisChangeData."""

    customer_id: str
    axis: str
    from_class: str | None
    to_class: str
    policy: PolicyName
    rule: str
    reason: str
    metrics: dict[str, MetricValue]
    due_at: str | None = None


class Output(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """OutputEvent, as the engine emits it."""

    specversion: str = "1.0"
    id: str
    source: str
    type: str
    subject: str
    time: str
    sequence: str
    datacontenttype: str = "application/json"
    data: Decision | Followup | AxisChange

    @property
    def topic_kind(self) -> Literal["tier-changes", "churn-warnings"]:
        return "churn-warnings" if self.type in CHURN_TYPES else "tier-changes"

    def record(self) -> bytes:
        """The event's JSON, as `OutputEvent.model_dump_json()` writes it."""
        if isinstance(self.data, Followup):
            return _encoder.encode(self)
        metrics = self.data.metrics
        if any(type(v) is float and abs(v) >= _EXPONENT_FROM for v in metrics.values()):
            # pydantic writes such floats as repr does (1e+16), msgspec without the `+`
            raw = {k: msgspec.Raw(repr(v).encode())
                   if type(v) is float and _EXPONENT_FROM <= abs(v) < math.inf else v
                   for k, v in metrics.items()}
            return _encoder.encode(replace(self, data=replace(self.data, metrics=raw)))
        return _encoder.encode(self)

    def document(self) -> dict:
        """The event as a JSON object."""
        return msgspec.to_builtins(self)


_EXPONENT_FROM = 1e16  # the smallest float both write with an exponent


class CustomerTier(_Frozen):
    """The compacted `customer-tiers` record, key = customer id; a null value means erased."""

    customer_id: str
    tier: str | None
    since: str | None = Field(description="RFC 3339, when the current tier was entered")
    churn: bool = Field(description="true while a churn episode is open")
    churn_rule: str | None = Field(description="the churn rule that opened the episode")
    sequence: int = Field(description="the customer's output events so far")
    created_at: int = Field(description="epoch microseconds of the customer's first event; "
                                        "with sequence, it orders one customer's records")
    as_of: str = Field(description="RFC 3339, the instant the record was decided at")
    axes: dict[str, str] = Field(default_factory=dict, description=(
        "the class on each of the policy's further axes, by axis (e.g. {\"lifecycle\": "
        "\"active\"}); left out under a policy without axes"))

    @classmethod
    def from_state(cls, state: CustomerState) -> CustomerTier:
        """The record as a model (the reference `record` is checked against)."""
        return cls(**_tier_fields(state))

    @staticmethod
    def record(state: CustomerState) -> bytes:
        """What `from_state(state).model_dump_json(exclude_defaults=True)` writes (no `axes`
        when there are none: the record of a policy without axes is as it was before them),
        without building the model."""
        return _encoder.encode(_tier_fields(state))


_encoder = msgspec.json.Encoder()


def _tier_fields(state: CustomerState) -> dict[str, Any]:
    since = state.tier_since
    return {"customer_id": state.customer_id, "tier": state.tier,
            "since": format_instant(since) if since is not None else None,
            "churn": state.churn_rule is not None, "churn_rule": state.churn_rule,
            "sequence": state.sequence, "created_at": state.created_at,
            "as_of": format_instant(state.clock),
            **({"axes": state.classes()} if state.axes else {})}
