"""Output events (design section 5): CloudEvents 1.0 envelopes around tier, churn, follow-up and
axis decisions.

The pydantic models are the contract (the JSON Schemas are generated from them). The engine
builds the msgspec structs below (`Output`), about twenty times cheaper to build and write; they
write byte for byte what the models write (tests/test_schema.py).

Each customer is a CloudEvents source of its own (`source_of`): its `sequence`, a per-customer
counter zero-padded to SEQUENCE_DIGITS, then sorts as a string and is unique within the source,
as the sequence extension asks. On Kafka an output goes in structured mode (the JSON envelope
as the value, `content-type: application/cloudevents+json`) or binary mode (`ce_*` headers, the
`data` JSON as the value), per the CloudEvents Kafka protocol binding (`kafka_record`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Annotated, Any, Literal
from urllib.parse import quote

import msgspec
from msgspec.structs import replace
from pydantic import BaseModel, ConfigDict, Field, model_validator

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
SEQUENCE_DIGITS = 20  # any 64-bit counter
# Types on the wire are `<prefix>.<kind>` (`io.github.tierstream.tier.upgraded`): a reverse-DNS
# prefix, TIERSTREAM_EVENT_TYPE_PREFIX; `tierstream` gives the names of format 1. The engine and
# the metrics use the canonical names, `tierstream.<kind>` (OutputType).
CANONICAL_PREFIX = "tierstream"
KINDS = tuple(t.removeprefix(f"{CANONICAL_PREFIX}.") for t in OutputType.__args__)  # tier.assigned
DEFAULT_TYPE_PREFIX = "io.github.tierstream"
TYPE_PREFIX_PATTERN = r"^[a-z][a-z0-9-]*(\.[a-z0-9-]+)*$"


def type_pattern(kinds: tuple[str, ...]) -> str:
    """The pattern of the types of these kinds under any prefix."""
    return TYPE_PREFIX_PATTERN[:-1] + r"\.(" + "|".join(k.replace(".", r"\.") for k in kinds) + ")$"


TYPE_PATTERN = type_pattern(KINDS)
# The contracts' format, the last part of each schema's `$id` (`schema_id`): changed with any
# change a consumer must know of.
FORMAT = 2


def schema_id(name: str) -> str:
    """The `$id` of the schema `<name>.schema.json` (schemas/)."""
    return f"urn:tierstream:schema:{name}:{FORMAT}"


# Every output event names its schema as its `dataschema`, by the first part of its kind.
SCHEMA_IDS = {"tier": schema_id("tier-change"), "churn": schema_id("churn-warning"),
              "followup": schema_id("followup"), "axis": schema_id("axis-change")}
STRUCTURED_CONTENT_TYPE = b"application/cloudevents+json"

# Constraints the schemas publish; the models check them too.
Instant = Annotated[str, Field(pattern=r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z$",
                               json_schema_extra={"format": "date-time"})]
Name = Annotated[str, Field(min_length=1)]


class _Frozen(BaseModel):
    # Serialized JSON always has every field, defaults included: the schemas say so.
    model_config = ConfigDict(frozen=True, extra="forbid",
                              json_schema_serialization_defaults_required=True)


class PolicyRef(_Frozen):
    name: Name
    version: Name


class DecisionData(_Frozen):
    """Why it happened: the rule that decided and the metric values it saw."""

    customer_id: Name
    from_tier: str | None
    to_tier: str | None
    policy: PolicyRef
    rule: str
    reason: str
    metrics: dict[str, MetricValue]
    due_at: Instant | None = None  # downgrade_warning: when the downgrade will happen
    churn_rule: str | None = None  # churn events: the rule that opened the episode


class FollowupData(_Frozen):
    """A follow-up of the customer's tier's plan (policy `followup`) falling due, overdue or
    done."""

    customer_id: Name
    tier: str
    policy: PolicyRef
    cadence: str                   # the plan's `every`, e.g. "14d"
    channel: Literal["personal", "automated"]
    due_at: Instant                # when the follow-up fell due
    last_contact_at: Instant | None  # the latest counting contact (done: the one that closed it)
    owner: str | None              # the owner the latest contact carrying one named
    reason: str


class AxisChangeData(_Frozen):
    """A customer's class on one of the policy's further axes (policy `axes`, e.g. lifecycle)
    assigned, moved or about to move; the value tier's own events are tier.*."""

    customer_id: Name
    axis: str
    from_class: str | None
    to_class: str
    policy: PolicyRef
    rule: str
    reason: str
    metrics: dict[str, MetricValue]
    due_at: Instant | None = None  # downgrade_warning: when the move down will happen


class OutputEvent(_Frozen):
    """A CloudEvents 1.0 event in structured JSON mode; Kafka key = subject = partitionkey =
    customer id."""

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(pattern="^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$",
                    description="a UUID (version 5) derived from the decision: the same input "
                                "gives the same id")
    source: str = Field(pattern="^/tierstream/policies/[^/]+/customers/[^/]+$",
                        json_schema_extra={"format": "uri-reference"},
                        description="the policy and the customer, percent-encoded")
    type: str = Field(pattern=TYPE_PATTERN, description=(
        "`<prefix>.<kind>`: a reverse-DNS prefix (TIERSTREAM_EVENT_TYPE_PREFIX, default "
        "io.github.tierstream) and the kind, e.g. tier.upgraded"))
    subject: Name = Field(description="the customer id")
    time: Instant = Field(description="the event time at which the decision happened")
    sequence: str = Field(pattern=f"^[0-9]{{{SEQUENCE_DIGITS}}}$", description=(
        "CloudEvents sequence extension: the customer's output events so far, zero-padded so "
        "that it sorts as a string"))
    partitionkey: Name = Field(description="CloudEvents partitioning extension: the customer "
                                           "id, the Kafka key")
    dataschema: str = Field(json_schema_extra={"format": "uri"},
                            description="the `$id` of the event's JSON Schema")
    datacontenttype: Literal["application/json"] = "application/json"
    data: DecisionData | FollowupData | AxisChangeData

    @model_validator(mode="after")
    def _names_its_schema(self) -> OutputEvent:
        wanted = SCHEMA_IDS[kind_of(self.type).split(".")[0]]
        if self.dataschema != wanted:
            raise ValueError(f"a {self.type} event's dataschema is {wanted}, not "
                             f"{self.dataschema}")
        return self

    @property
    def canonical_type(self) -> str:
        """The type under the canonical prefix (`tierstream.tier.upgraded`)."""
        return f"{CANONICAL_PREFIX}.{kind_of(self.type)}"

    @property
    def topic_kind(self) -> Literal["tier-changes", "churn-warnings"]:
        return "churn-warnings" if self.canonical_type in CHURN_TYPES else "tier-changes"


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
    partitionkey: str
    dataschema: str
    datacontenttype: str = "application/json"
    data: Decision | Followup | AxisChange

    @property
    def topic_kind(self) -> Literal["tier-changes", "churn-warnings"]:
        return "churn-warnings" if self.type in CHURN_TYPES else "tier-changes"

    def record(self, prefix: str = DEFAULT_TYPE_PREFIX) -> bytes:
        """The event's JSON, as `OutputEvent.model_dump_json()` writes it, its type under
        `prefix`."""
        return _encoder.encode(self._written(prefix))

    def kafka_record(self, binary: bool, prefix: str = DEFAULT_TYPE_PREFIX
                     ) -> tuple[bytes, list[tuple[str, bytes]]]:
        """The Kafka value and headers of the event in structured or binary mode."""
        if not binary:
            return self.record(prefix), [("content-type", STRUCTURED_CONTENT_TYPE)]
        written = self._written(prefix)
        return _encoder.encode(written.data), [
            ("ce_specversion", b"1.0"), ("ce_id", self.id.encode()),
            ("ce_source", self.source.encode()), ("ce_type", written.type.encode()),
            ("ce_subject", self.subject.encode()), ("ce_time", self.time.encode()),
            ("ce_sequence", self.sequence.encode()),
            ("ce_partitionkey", self.partitionkey.encode()),
            ("ce_dataschema", self.dataschema.encode()),
            ("content-type", self.datacontenttype.encode())]

    def _typed(self, prefix: str) -> Output:
        """The event with its type under `prefix`."""
        return self if prefix == CANONICAL_PREFIX else \
            replace(self, type=prefix + self.type[len(CANONICAL_PREFIX):])

    def _written(self, prefix: str) -> Output:
        """The event as encoded: its type under `prefix`, floats of metrics written as pydantic
        writes them."""
        written = self._typed(prefix)
        if isinstance(self.data, Followup):
            return written
        metrics = self.data.metrics
        if any(type(v) is float and abs(v) >= _EXPONENT_FROM for v in metrics.values()):
            # pydantic writes such floats as repr does (1e+16), msgspec without the `+`
            raw = {k: msgspec.Raw(repr(v).encode())
                   if type(v) is float and _EXPONENT_FROM <= abs(v) < math.inf else v
                   for k, v in metrics.items()}
            return replace(written, data=replace(self.data, metrics=raw))
        return written

    def document(self, prefix: str = DEFAULT_TYPE_PREFIX) -> dict:
        """The event as a JSON object."""
        return msgspec.to_builtins(self._typed(prefix))


def kind_of(event_type: str) -> str:
    """`io.github.tierstream.tier.upgraded` -> `tier.upgraded`, whatever the prefix."""
    head, _, group = event_type.rpartition(".")[0].rpartition(".")
    kind = f"{group}.{event_type.rpartition('.')[2]}"
    if kind not in KINDS or not head:
        raise ValueError(f"{event_type!r} is not an output type (<prefix>.<kind>)")
    return kind


def sources_of(policy_name: str) -> str:
    """What the CloudEvents sources of a policy's customers start with (`source_of`)."""
    return f"/tierstream/policies/{quote(policy_name, safe='')}/customers/"


def source_of(sources: str, customer_id: str) -> str:
    """The CloudEvents source of a customer's outputs: `sources` (of its policy) and its id."""
    if _UNRESERVED.fullmatch(customer_id):  # the common id, which quoting leaves as it is
        return sources + customer_id
    return sources + quote(customer_id, safe="")


_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*")  # what `quote` never escapes


def format_sequence(sequence: int) -> str:
    return str(sequence).zfill(SEQUENCE_DIGITS)


def structured(value: bytes | None, headers: Iterable[tuple[str, bytes]] | None) -> bytes:
    """The structured-mode JSON of an output read from Kafka in either mode (in binary mode the
    attributes come from the `ce_*` headers, in the envelope's order as the worker writes them:
    the same bytes as the structured record)."""
    attributes = {name[3:]: raw.decode() for name, raw in headers or () if name.startswith("ce_")}
    if not attributes:
        return value or b""
    content_type = next((raw.decode() for name, raw in headers or () if name == "content-type"),
                        "application/json")
    return _encoder.encode({**attributes, "datacontenttype": content_type,
                            "data": msgspec.Raw(value or b"null")})


_EXPONENT_FROM = 1e16  # the smallest float both write with an exponent


class CustomerTier(_Frozen):
    """The compacted `customer-tiers` record, key = customer id; a null value means erased."""

    customer_id: Name
    tier: str | None
    since: Instant | None = Field(description="RFC 3339, when the current tier was entered")
    churn: bool = Field(description="true while a churn episode is open")
    churn_rule: str | None = Field(description="the churn rule that opened the episode")
    sequence: int = Field(description="the customer's output events so far")
    created_at: int = Field(description="epoch microseconds of the customer's first event; "
                                        "with sequence, it orders one customer's records")
    as_of: Instant = Field(description="RFC 3339, the instant the record was decided at")
    axes: dict[str, str] = Field(default_factory=dict, description=(
        "the class on each of the policy's further axes, by axis (e.g. {\"lifecycle\": "
        "\"active\"}); left out under a policy without axes"))

    @classmethod
    def from_state(cls, state: CustomerState) -> CustomerTier:
        """The record as a model (the reference `record` is checked against)."""
        return cls(**tier_fields(state))

    @staticmethod
    def record(state: CustomerState) -> bytes:
        """What `from_state(state).model_dump_json(exclude_defaults=True)` writes (no `axes`
        when there are none: the record of a policy without axes is as it was before them),
        without building the model."""
        return CustomerTier.written(tier_fields(state))

    @staticmethod
    def written(fields: dict[str, Any]) -> bytes:
        """The record of a state given its `tier_fields`."""
        return _encoder.encode(fields)


_encoder = msgspec.json.Encoder()


def tier_fields(state: CustomerState) -> dict[str, Any]:
    """The fields of the state's `customer-tiers` record (CustomerTier)."""
    since = state.tier_since
    return {"customer_id": state.customer_id, "tier": state.tier,
            "since": format_instant(since) if since is not None else None,
            "churn": state.churn_rule is not None, "churn_rule": state.churn_rule,
            "sequence": state.sequence, "created_at": state.created_at,
            "as_of": format_instant(state.clock),
            **({"axes": state.classes()} if state.axes else {})}
