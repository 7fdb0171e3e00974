"""A seeded synthetic e-commerce population and its event stream; pure, no I/O and no clock.

Each customer follows an archetype (big spender, regular, occasional, drifting away, one-time)
that sets how often and how much they buy, how often they refund, cancel and complain. Order
gaps shrink in high season (a yearly wave peaking in winter plus a Singles' Day bump on 11 Nov).
Every customer has a random generator of their own, derived from the seed and their number, so
a customer's history does not depend on how many others are simulated.

`population_events` yields event dicts in event-time order (ties by event id, like replay);
`with_noise` mixes in malformed records and exact re-sends of recent ones.
"""

from __future__ import annotations

import heapq
import json
import math
import random
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, NamedTuple

from models.instants import to_micros

ORDERS, INTERACTIONS = "orders", "interactions"
MAX_LEAD = timedelta(hours=12)  # the longest time an event may come before its order (a visit)
ZONES = {"CNY": timezone(timedelta(hours=8)), "USD": timezone(timedelta(hours=-5))}
CNY_PER_USD = 7.1
REPS = 12
Timed = tuple[datetime, dict[str, Any]]


@dataclass(frozen=True)
class Archetype:
    """How one kind of customer behaves; amounts are in CNY."""

    name: str
    share: float
    mean_gap_days: float
    gap_shape: float            # gamma shape: higher is more regular
    median_amount: float
    amount_spread: float        # sigma of the log-normal amount
    refund_rate: float
    cancel_rate: float
    complaint_rate: float
    max_orders: int = 10_000
    drift_after: int | None = None   # after this many orders the gaps grow and buying stops


ARCHETYPES = (
    Archetype("big_spender", 0.08, 18, 4.0, 2500, 0.5, 0.05, 0.02, 0.03),
    Archetype("regular", 0.30, 28, 3.0, 380, 0.5, 0.04, 0.03, 0.02),
    Archetype("occasional", 0.35, 110, 1.5, 220, 0.6, 0.05, 0.05, 0.03),
    Archetype("drifting", 0.15, 16, 3.0, 600, 0.5, 0.08, 0.04, 0.12, drift_after=6),
    Archetype("one_time", 0.12, 1, 1.0, 160, 0.7, 0.10, 0.05, 0.05, max_orders=1),
)


@dataclass(frozen=True)
class Population:
    """What to simulate: how many customers, from which seed, over which span of event time."""

    customers: int
    seed: int
    start: datetime
    days: float

    @property
    def end(self) -> datetime:
        return self.start + timedelta(days=self.days)


class Record(NamedTuple):
    """One message to send: topic kind (orders or interactions), key, value, what it is."""

    topic: str
    key: bytes
    value: bytes
    kind: str       # event type, `interaction/<kind>`, `malformed/<variant>` or `duplicate`
    at: int         # simulated event time (micros) it belongs to, for progress


def seasonality(moment: datetime) -> float:
    """Relative order rate: a yearly wave peaking in late December and a Singles' Day bump."""
    day = moment.timetuple().tm_yday
    wave = 0.25 * math.cos(2 * math.pi * (day - 355) / 365.25)
    singles_day = 1.2 * math.exp(-(((day - 315) / 4) ** 2))
    return 1.0 + wave + singles_day


def population_events(population: Population) -> Iterator[dict[str, Any]]:
    """Every customer's events merged into one stream in event-time order."""
    timelines = (_timeline(population, number) for number in range(population.customers))
    return (event for _, _, event in heapq.merge(*timelines))


def _timeline(population: Population, number: int) -> Iterator[tuple[int, str, dict]]:
    """One customer's events as (micros, event id, event), sorted, generated lazily.

    Events of later orders are never earlier than their order minus MAX_LEAD, so whatever is
    pending before that instant can be released before the next order's events are made."""
    customer = _Customer(population, number)
    pending: list[tuple[int, str, dict]] = []
    end = to_micros(population.end)
    for group in customer.orders():
        release = to_micros(group[0][0] - MAX_LEAD)
        while pending and pending[0][0] <= release:
            yield heapq.heappop(pending)
        for moment, event in group:
            at = to_micros(moment)
            if at <= end:
                heapq.heappush(pending, (at, event["event_id"], event))
    while pending:
        yield heapq.heappop(pending)


class _Customer:
    """Makes one customer's orders and everything that follows from each."""

    def __init__(self, population: Population, number: int) -> None:
        self.rng = random.Random(f"{population.seed}:{number}")
        self.id = f"s{population.seed}-c{number:05d}"
        self.archetype = self.rng.choices(ARCHETYPES, weights=[a.share for a in ARCHETYPES])[0]
        self.currency = "USD" if self.rng.random() < 0.1 else "CNY"
        self.zone = ZONES[self.currency]
        self.population = population
        self.count = 0
        self.rep = f"rep-{number % REPS + 1:02d}"  # the sales rep whose visits it gets

    def orders(self) -> Iterator[list[Timed]]:
        """Each order with what follows from it, the order first, in order time; the first
        order falls in the first 60% of the span."""
        kind, rng = self.archetype, self.rng
        at = self.population.start + timedelta(days=rng.uniform(0, 0.6 * self.population.days))
        gap_days = kind.mean_gap_days
        for number in range(kind.max_orders):
            if at > self.population.end:
                return
            yield self._order_group(at, number)
            if kind.drift_after is not None and number >= kind.drift_after:
                gap_days *= 1.6
                if rng.random() < 0.25:
                    return
            gap = rng.gammavariate(kind.gap_shape, gap_days / kind.gap_shape) / seasonality(at)
            at += timedelta(days=max(1.0, gap), seconds=rng.randrange(36_000))

    def _order_group(self, at: datetime, number: int) -> list[Timed]:
        rng, kind = self.rng, self.archetype
        order_id = f"{self.id}-o{number}"
        amount = rng.lognormvariate(math.log(kind.median_amount), kind.amount_spread)
        if self.currency == "USD":
            amount /= CNY_PER_USD
        group = [self._event(at, "order_completed", order_id=order_id,
                             amount=f"{amount:.2f}", currency=self.currency)]
        if rng.random() < 0.5:
            lead = timedelta(seconds=rng.randrange(60, int(MAX_LEAD.total_seconds())))
            group.append(self._interaction(at - lead, "visit", owner=self.rep))
        if rng.random() < kind.cancel_rate:
            group.append(self._event(at + timedelta(minutes=rng.randrange(5, 180)),
                                     "order_cancelled", order_id=order_id))
            return group
        complained = rng.random() < kind.complaint_rate
        if complained:
            group.append(self._interaction(at + timedelta(days=rng.uniform(1, 10)), "complaint",
                                           score=float(rng.randrange(0, 4))))
        if rng.random() < (0.5 if complained else kind.refund_rate):
            share = 1.0 if rng.random() < 0.6 else rng.uniform(0.2, 0.8)
            group.append(self._event(at + timedelta(days=rng.uniform(2, 20)), "order_refunded",
                                     order_id=order_id, amount=f"{amount * share:.2f}",
                                     currency=self.currency))
        elif rng.random() < 0.1:
            group.append(self._interaction(at + timedelta(days=rng.uniform(3, 14)), "survey",
                                           score=float(rng.randrange(5, 11))))
        return group

    def _interaction(self, at: datetime, kind: str, **fields: Any) -> Timed:
        return self._event(at, "interaction", kind=kind, **fields)

    def _event(self, at: datetime, event_type: str, **fields: Any) -> Timed:
        self.count += 1
        moment = at.astimezone(self.zone).replace(microsecond=0)
        return moment, {"event_id": f"{self.id}-e{self.count}", "type": event_type,
                        "customer_id": self.id, "occurred_at": moment.isoformat(), **fields}


def to_record(event: dict[str, Any]) -> Record:
    topic = INTERACTIONS if event["type"] == "interaction" else ORDERS
    kind = f"interaction/{event['kind']}" if topic == INTERACTIONS else event["type"]
    return Record(topic, event["customer_id"].encode(), json.dumps(event).encode(), kind,
                  to_micros(datetime.fromisoformat(event["occurred_at"])))


def with_noise(records: Iterable[Record], malformed: float, duplicates: float,
               rng: random.Random) -> Iterator[Record]:
    """The records with malformed ones and re-sends mixed in, about the given shares of all.

    Before each record, each slot is malformed with probability `malformed`, a re-send of one of
    the last 100 records with probability `duplicates`, else the record itself comes next. A
    malformed record is a broken copy of the record that follows it (same key and topic)."""
    recent: deque[Record] = deque(maxlen=100)
    for record in records:
        while True:
            roll = rng.random()
            if roll < malformed:
                yield corrupt(record, rng)
            elif roll < malformed + duplicates and recent:
                yield rng.choice(recent)._replace(kind="duplicate")
            else:
                break
        yield record
        recent.append(record)


def corrupt(record: Record, rng: random.Random) -> Record:
    """A copy of the record that breaks the event contract in one of several ways."""
    variant = rng.choice(sorted(_CORRUPTIONS))
    event = json.loads(record.value)
    value = _CORRUPTIONS[variant](event, record.value)
    return record._replace(value=value, kind=f"malformed/{variant}")


def _with(event: dict, **changes: Any) -> bytes:
    return json.dumps({**event, **changes}).encode()


def _without_fields(event: dict, *fields: str) -> dict:
    return {k: v for k, v in event.items() if k not in fields}


_CORRUPTIONS = {
    "truncated_json": lambda event, raw: raw[: len(raw) // 2],
    "wrong_type": lambda event, raw: _with(event, customer_id=12345),
    "negative_amount": lambda event, raw: _with(_without_fields(event, "kind", "score"),
                                                type="order_completed", currency="CNY",
                                                order_id=event.get("order_id", event["event_id"]),
                                                amount=-abs(float(event.get("amount", 99)))),
    "bad_timestamp": lambda event, raw: _with(event, occurred_at=event["occurred_at"][:19]),
    "invalid_utf8": lambda event, raw: raw.replace(b'"customer_id": "',
                                                   b'"customer_id": "\xff\xfe'),
    "unknown_type": lambda event, raw: _with(event, type="order_shipped"),
    "missing_field": lambda event, raw: json.dumps(_without_fields(event, "customer_id")).encode(),
}

