"""`tierstream tail`: follow tier-changes and churn-warnings, filtered, as lines or JSON."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from kafka import KafkaConsumer, TopicPartition
from pydantic import ValidationError
from rich.console import Console
from rich.text import Text

from models.errors import ConnectError
from models.outputs import (
    AxisChangeData,
    DecisionData,
    FollowupData,
    OutputEvent,
    OutputType,
    kind_of,
    structured,
)
from streams.kafka import clients as kafka_clients
from streams.settings import Settings

TYPES: tuple[str, ...] = OutputType.__args__
# label and colour of each type on a terminal
LOOKS = {"assigned": ("assigned", "blue"), "upgraded": ("upgrade", "green"),
         "downgraded": ("downgrade", "red"), "downgrade_warning": ("warning", "yellow"),
         "churn.warning": ("churn", "bold magenta"), "churn.recovered": ("recovered", "cyan"),
         "followup.due": ("due", "yellow"), "followup.overdue": ("overdue", "bold red"),
         "followup.done": ("contacted", "green")}
POLL_MS = 200


def short_type(kind: str) -> str:
    """`tierstream.tier.upgraded` -> `upgraded`, `tierstream.churn.warning` -> `churn.warning`,
    `tierstream.axis.upgraded` -> `axis.upgraded`."""
    return kind.removeprefix("tierstream.").removeprefix("tier.")


def full_types(name: str) -> frozenset[str]:
    """The output types a `--type` name means: a full type, a short one, a suffix after a dot
    (of a type not of an axis: `upgraded` is the tier's), or a group (`tier`, `churn`,
    `followup`, `axis`)."""
    with contextlib.suppress(ValueError):  # a type as on the wire, under any prefix
        name = f"tierstream.{kind_of(name)}"
    found = frozenset(t for t in TYPES if t == name or short_type(t) == name
                      or t.endswith(f".{name}") and not t.startswith("tierstream.axis.")
                      or t.startswith(f"tierstream.{name}."))
    if not found:
        known = ", ".join(short_type(t) for t in TYPES)
        raise ValueError(f"unknown event type {name!r}; expected one of {known}")
    return found


@dataclass(frozen=True)
class Filter:
    """Which events to show; an empty set lets everything through."""

    customers: frozenset[str] = frozenset()
    tiers: frozenset[str] = frozenset()
    types: frozenset[str] = frozenset()
    axes: frozenset[str] = frozenset()

    @classmethod
    def of(cls, customers: Iterable[str] = (), tiers: Iterable[str] = (),
           types: Iterable[str] = (), axes: Iterable[str] = ()) -> Filter:
        wanted = frozenset().union(*(full_types(name) for name in types))
        return cls(frozenset(customers), frozenset(tiers), wanted, frozenset(axes))

    def matches(self, event: OutputEvent) -> bool:
        return ((not self.customers or event.subject in self.customers)
                and (not self.tiers or bool(_tiers(event.data) & self.tiers))
                and (not self.types or event.canonical_type in self.types)
                and (not self.axes or _axis(event.data) in self.axes))


def _tiers(data: DecisionData | FollowupData | AxisChangeData) -> set[str | None]:
    """The tiers (or an axis' classes) an event moves from or to, or is about."""
    if isinstance(data, FollowupData):
        return {data.tier}
    if isinstance(data, AxisChangeData):
        return {data.from_class, data.to_class}
    return {data.from_tier, data.to_tier}


def _axis(data: DecisionData | FollowupData | AxisChangeData) -> str:
    """The axis an event is on: its own, or `tier` (the value tier, its churn and follow-ups)."""
    return data.axis if isinstance(data, AxisChangeData) else "tier"


def line(event: OutputEvent) -> Text:
    """One readable line: time, customer, what happened, tiers and why (with the values seen,
    or a follow-up's owner)."""
    data = event.data
    label, style = LOOKS[short_type(event.canonical_type).removeprefix("axis.")]
    if isinstance(data, FollowupData):
        tiers = data.tier
    elif isinstance(data, AxisChangeData):
        tiers = f"{data.axis} " + (data.to_class if data.from_class == data.to_class else
                                   f"{data.from_class or '-'} → {data.to_class}")
    else:
        tiers = (data.to_tier or "-") if data.from_tier == data.to_tier else \
            f"{data.from_tier or '-'} → {data.to_tier or '-'}"
    text = Text(f"{event.time:<27} ")
    text.append(f"{event.subject:<12} ", style="bold")
    text.append(f"{label:<9} ", style=style)
    text.append(f"{tiers:<6} ", style=style)
    text.append(data.reason)
    if isinstance(data, FollowupData):
        if data.owner:
            text.append(f"  (owner {data.owner})", style="dim")
        return text
    seen = [f"{name}={_number(value)}" for name, value in sorted(data.metrics.items())
            if re.search(rf"\b{re.escape(name)}\b", data.reason)]
    if seen:
        text.append(f"  ({', '.join(seen)})", style="dim")
    return text


def _number(value: float | int | str) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class Options:
    from_beginning: bool = False
    limit: int | None = None
    timeout_s: float | None = None  # stop once nothing was shown for this long
    json: bool = False


def run(settings: Settings, wanted: Filter, options: Options, out: Console,
        err: Console) -> int:
    """Print matching events until the limit, the timeout or Ctrl-C; return how many."""
    consumer = output_consumer(settings, options.from_beginning)
    shown, quiet_since = 0, time.monotonic()
    try:
        while options.timeout_s is None or time.monotonic() - quiet_since < options.timeout_s:
            for value in _poll(consumer):
                if _show(value, wanted, options.json, out, err):
                    shown, quiet_since = shown + 1, time.monotonic()
                    if shown == options.limit:
                        return shown
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
    return shown


def _poll(consumer: KafkaConsumer) -> Iterator[bytes]:
    """Each output's structured-mode JSON, whichever mode it was written in."""
    for records in consumer.poll(timeout_ms=POLL_MS).values():
        for record in records:
            yield structured(record.value, record.headers)


def _show(value: bytes, wanted: Filter, as_json: bool, out: Console,
          err: Console) -> bool:
    event = _parse(value, err)
    if event is None or not wanted.matches(event):
        return False
    if as_json:
        out.file.write(value.decode() + "\n")
        out.file.flush()
    else:
        out.print(line(event), soft_wrap=True)
    return True


def _parse(value: bytes, err: Console) -> OutputEvent | None:
    try:
        return OutputEvent.model_validate_json(value)
    except ValidationError as error:
        err.print(f"[yellow]skipped a record that is not an output event:[/] "
                  f"{error.errors(include_url=False)[0]['msg']}", highlight=False)
        return None


def output_consumer(settings: Settings, from_beginning: bool) -> KafkaConsumer:
    """A consumer without a group, on every partition of both topics, at their start or end."""
    with kafka_clients.connecting(settings):
        consumer = kafka_clients.committed_reader(kafka_clients.kafka_python_config(settings),
                                                  client_id=f"{settings.app_id}-tail")
    try:
        partitions = []
        for topic in (settings.topics.tier_changes, settings.topics.churn_warnings):
            found = consumer.partitions_for_topic(topic)
            if not found:
                raise ConnectError(f"topic {topic!r} not found on {settings.bootstrap_servers}; "
                                   "run `tierstream topics create` first")
            partitions += [TopicPartition(topic, p) for p in sorted(found)]
        consumer.assign(partitions)
        (consumer.seek_to_beginning if from_beginning else consumer.seek_to_end)(*partitions)
        return consumer
    except BaseException:
        consumer.close()
        raise
