"""`tierstream topics create|describe`: the topics tierstream uses, created idempotently."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kafka.errors import KafkaError, TopicAlreadyExistsError

from models.errors import ConnectError
from streams.kafka import clients
from streams.settings import Settings


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication: int
    configs: dict[str, str]
    role: str


def replicated(replication: int) -> dict[str, str]:
    """The topic configs of a replication factor: from 3 copies on, a write needs two in sync,
    so one broker may fail without losing an acknowledged write and one may be down without
    stopping writes (the worker's changelog gets the same)."""
    return {"min.insync.replicas": "2"} if replication >= 3 else {}


def specs(settings: Settings) -> list[TopicSpec]:
    """Inputs, ticks and the per-customer outputs share one partition count (co-partitioned)."""
    t, n, r = settings.topics, settings.partitions, settings.replication
    plain = replicated(r)
    compacted = {"cleanup.policy": "compact", **plain}
    return [
        TopicSpec(t.orders, n, r, plain, "input: order events, key = customer id"),
        TopicSpec(t.interactions, n, r, plain, "input: interaction events, key = customer id"),
        TopicSpec(t.ticks, n, r, {"retention.ms": str(3_600_000), **plain},
                  "internal: clock ticks, one per partition"),
        TopicSpec(t.tier_changes, n, r, plain, "output: tier.* and followup.* CloudEvents"),
        TopicSpec(t.churn_warnings, n, r, plain, "output: churn.* CloudEvents"),
        TopicSpec(t.customer_tiers, n, r, compacted, "output: current tier per customer"),
        TopicSpec(t.dead_letters, n, r, plain, "output: rejected input, original bytes"),
        TopicSpec(t.population, 1, r, compacted,
                  "internal: per-partition population sketches for relative metrics"),
    ]


def create(settings: Settings) -> list[tuple[TopicSpec, str]]:
    """Create what is missing; report each topic as created, exists or a mismatch."""
    client = clients.admin(settings)
    try:
        existing = _existing(client)
        results = []
        for spec in specs(settings):
            if spec.name in existing:
                have = len(existing[spec.name]["partitions"])
                status = "exists" if have == spec.partitions else \
                    f"MISMATCH: has {have} partitions, tierstream needs {spec.partitions}"
                results.append((spec, status))
                continue
            try:
                client.create_topics({spec.name: {"num_partitions": spec.partitions,
                                                 "replication_factor": spec.replication,
                                                 "configs": spec.configs}},
                                    wait_for_metadata=True)
                results.append((spec, "created"))
            except TopicAlreadyExistsError:
                results.append((spec, "exists"))
        return results
    finally:
        client.close()


def describe(settings: Settings) -> list[tuple[TopicSpec, str]]:
    client = clients.admin(settings)
    try:
        existing = _existing(client)
    finally:
        client.close()
    results = []
    for spec in specs(settings):
        found = existing.get(spec.name)
        results.append((spec, "missing" if found is None else
                        _partitions(len(found["partitions"]))))
    return results


def check(settings: Settings) -> None:
    """Refuse to run on missing topics or partition counts that break co-partitioning."""
    problems = [f"{spec.name}: {status}" for spec, status in describe(settings)
                if status != _partitions(spec.partitions)]
    if problems:
        raise ConnectError(
            f"topics do not match TIERSTREAM_PARTITIONS={settings.partitions}: "
            f"{'; '.join(problems)}; run `tierstream topics create` (or fix the partitions)")


def _partitions(count: int) -> str:
    return f"{count} partition{'' if count == 1 else 's'}"


def existing(client: Any) -> dict[str, dict]:
    """Every topic of the cluster by name, as the admin client describes it (partitions,
    topic_id); ConnectError when the cluster cannot be asked."""
    return _existing(client)


def _existing(client: Any) -> dict[str, dict]:
    try:
        described = client.describe_topics()
    except KafkaError as error:
        raise ConnectError(f"cannot describe topics: {error}") from None
    return {d["name"]: d for d in described if not d.get("error_code")}
