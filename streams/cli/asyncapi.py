"""The AsyncAPI 3.0 document of the Kafka topics, seen from the worker, with Kafka bindings.

It describes the default topic names and partition count (streams/settings.py), never the
environment, so the committed document is the same wherever it is generated.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

from streams.kafka import topics
from streams.settings import Settings, Topics

BINDING = "0.5.0"  # AsyncAPI Kafka bindings version
CUSTOMER_KEY = {"type": "string", "minLength": 1, "maxLength": 128,
                "description": "the customer id (UTF-8), so a customer stays on one partition"}

Doc = dict[str, Any]

# channel id -> (Topics field, message names, operations of the worker)
CHANNELS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "orders": ("orders", ("InputEvent",), ("receive",)),
    "interactions": ("interactions", ("InputEvent",), ("receive",)),
    "ticks": ("ticks", ("Tick",), ("send", "receive")),
    "tierChanges": ("tier_changes", ("TierChange", "Followup", "AxisChange"), ("send",)),
    "churnWarnings": ("churn_warnings", ("ChurnWarning",), ("send",)),
    "customerTiers": ("customer_tiers", ("CustomerTier",), ("send",)),
    "deadLetters": ("dead_letters", ("DeadLetter",), ("send",)),
    "population": ("population", ("PopulationReport",), ("send", "receive")),
}


def default_settings() -> Settings:
    """The defaults of streams/settings.py, without reading the environment."""
    return Settings.model_construct(topics=Topics.model_construct())


def document(schemas: dict[str, dict[str, Any]]) -> Doc:
    """The whole document; `schemas` are the JSON Schemas of streams/cli/schema.py by name."""
    settings = default_settings()
    return {
        "asyncapi": "3.0.0",
        "info": {"title": "tierstream", "version": version("tierstream"),
                 "description": "Customer tiers from order and interaction events: tier "
                                "changes, churn warnings and the current tier per customer.",
                 "license": {"name": "Apache-2.0"}},
        "defaultContentType": "application/json",
        "servers": {"kafka": {
            "host": settings.bootstrap_servers, "protocol": "kafka",
            "description": "KAFKA_BOOTSTRAP_SERVERS (TIERSTREAM_KAFKA_* for TLS and SASL)"}},
        "channels": _channels(settings),
        "operations": _operations(settings),
        "components": {"messages": _messages(), "schemas": _components(schemas)},
    }


def _channels(settings: Settings) -> Doc:
    by_name = {spec.name: spec for spec in topics.specs(settings)}
    channels = {}
    for channel, (field, messages, _) in CHANNELS.items():
        spec = by_name[getattr(settings.topics, field)]
        kafka: Doc = {"topic": spec.name, "partitions": spec.partitions,
                      "replicas": spec.replication, "bindingVersion": BINDING}
        if spec.configs:
            kafka["topicConfiguration"] = _topic_configuration(spec.configs)
        channels[channel] = {
            "address": spec.name, "description": spec.role, "bindings": {"kafka": kafka},
            "messages": {m: {"$ref": f"#/components/messages/{m}"} for m in messages}}
    return channels


def _topic_configuration(configs: dict[str, str]) -> Doc:
    """Topic configs as the binding types them: cleanup.policy a list, durations integers."""
    return {key: value.split(",") if key == "cleanup.policy" else int(value)
            for key, value in configs.items()}


def _operations(settings: Settings) -> Doc:
    operations = {}
    for channel, (_, messages, actions) in CHANNELS.items():
        for action in actions:
            operation: Doc = {
                "action": action, "channel": {"$ref": f"#/channels/{channel}"},
                "messages": [{"$ref": f"#/channels/{channel}/messages/{m}"} for m in messages]}
            if action == "receive":
                operation["bindings"] = {"kafka": {"bindingVersion": BINDING, "groupId": {
                    "type": "string", "default": settings.app_id,
                    "description": "the workers' consumer group: TIERSTREAM_APP_ID"}}}
            operations[f"{action}{channel[0].upper()}{channel[1:]}"] = operation
    return operations


def _messages() -> Doc:
    def message(name: str, summary: str, content_type: str, payload: Doc,
                key: Doc = CUSTOMER_KEY, **more: Any) -> Doc:
        return {"name": name, "summary": summary, "contentType": content_type,
                "payload": payload, "bindings": {"kafka": {"key": key,
                                                           "bindingVersion": BINDING}}, **more}

    cloudevent = "application/cloudevents+json"
    modes = (" In binary mode (TIERSTREAM_CLOUDEVENTS_MODE=binary) the attributes are `ce_*` "
             "headers and the value is `data`.")
    return {
        "InputEvent": message("InputEvent", "An order or interaction event (JSON).",
                              "application/json", _ref("InputEvent")),
        "TierChange": message("TierChange", "tier.assigned, upgraded, downgraded or "
                              "downgrade_warning, as a structured CloudEvent." + modes, cloudevent,
                              _ref("TierChange")),
        "Followup": message("Followup", "followup.due, overdue or done (the tier's follow-up "
                            "plan), as a structured CloudEvent." + modes, cloudevent,
                            _ref("Followup")),
        "AxisChange": message("AxisChange", "axis.assigned, upgraded, downgraded or "
                              "downgrade_warning (a class on one of the policy's further axes, "
                              "`data.axis`), as a structured CloudEvent." + modes, cloudevent,
                              _ref("AxisChange")),
        "ChurnWarning": message("ChurnWarning", "churn.warning or churn.recovered, as a "
                                "structured CloudEvent." + modes, cloudevent, _ref("ChurnWarning")),
        "CustomerTier": message(
            "CustomerTier", "The current tier of a customer; a null value (tombstone) when "
            "the customer was erased.", "application/json",
            {"anyOf": [_ref("CustomerTier"), {"type": "null"}]}),
        "DeadLetter": message(
            "DeadLetter", "A rejected input message: original key and bytes, unchanged.",
            "application/octet-stream", {"description": "the original message value"},
            key={"description": "the original message key, unchanged"}, headers=_dead_headers()),
        "Tick": message(
            "Tick", "Internal clock tick, one per partition and interval.", "text/plain",
            {"type": "string", "pattern": "^[0-9]+$",
             "description": "wall-clock time of the sending worker, epoch microseconds"},
            key={"type": "string", "const": "tick"}),
        "PopulationReport": message(
            "PopulationReport", "Internal, relative metrics only: one partition's sketches of "
            "each base metric at its latest refresh boundaries (streams/worker/population.py).",
            "application/json", _population_report(),
            key={"type": "string", "pattern": "^[0-9]+$", "description": "the partition"}),
    }


def _population_report() -> Doc:
    digits = {"type": "integer", "minimum": 0}
    report = {"type": "object", "required": ["boundary", "customers", "sketches"],
              "properties": {
                  "boundary": {**digits, "description": "the refresh boundary, epoch us"},
                  "customers": {**digits, "description": "customers summarised"},
                  "sketches": {"type": "object", "description": "base metric -> serialised "
                               "Apache DataSketches KLL doubles sketch, base64",
                               "additionalProperties": {"type": "string",
                                                        "contentEncoding": "base64"}}}}
    return {"type": "object", "required": ["partition", "partitions", "reports"],
            "properties": {"partition": digits, "partitions": digits,
                           "reports": {"type": "array", "maxItems": 2, "items": report,
                                       "description": "newest first"}}}


def _dead_headers() -> Doc:
    text = {"type": "string"}
    digits = {"type": "string", "pattern": "^[0-9]+$"}
    return {"type": "object", "required": ["source_topic", "source_partition", "source_offset",
                                           "reason", "error"],
            "properties": {
                "source_topic": {**text, "description": "topic the message was read from"},
                "source_partition": {**digits, "description": "its partition"},
                "source_offset": {**digits, "description": "its offset"},
                "reason": {**text, "description": "short reason, e.g. not_json, "
                           "invalid_field, unknown_currency, wrong_key, policy_error"},
                "error": {**text, "description": "what was wrong, readable"}}}


def _ref(name: str) -> Doc:
    return {"$ref": f"#/components/schemas/{name}"}


def _components(schemas: dict[str, dict[str, Any]]) -> Doc:
    """Every schema and its `$defs` side by side under components/schemas, refs rewritten (and
    without `$id`, which would make them relative to the schema's own URI)."""
    components: Doc = {}
    for name, schema in schemas.items():
        schema = {key: value for key, value in schema.items() if key != "$id"}
        for sub, definition in {**schema.pop("$defs", {}), name: schema}.items():
            moved = _relocate(definition)
            if components.setdefault(sub, moved) != moved:
                raise ValueError(f"two different schemas are both named {sub!r}")
    return components


def _relocate(node: Any) -> Any:
    """`#/$defs/X` -> `#/components/schemas/X`; an OpenAPI-style discriminator object -> the
    property name, which is what the AsyncAPI schema object takes."""
    if isinstance(node, list):
        return [_relocate(item) for item in node]
    if not isinstance(node, dict):
        return node
    moved = {key: _relocate(value) for key, value in node.items()}
    if isinstance(ref := moved.get("$ref"), str) and ref.startswith("#/$defs/"):
        moved["$ref"] = "#/components/schemas/" + ref.removeprefix("#/$defs/")
    if isinstance(moved.get("discriminator"), dict):
        moved["discriminator"] = moved["discriminator"]["propertyName"]
    return moved
