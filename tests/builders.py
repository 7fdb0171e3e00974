"""Builders for the tests: instants in days, input events, inline policies, replay summaries."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import msgspec

from models.events import Event, event_from_fields
from models.instants import MICROS_PER_DAY, format_instant, to_micros
from models.outputs import Decision, Output
from models.state import CustomerState
from rules.compiled import CompiledPolicy
from rules.engine import apply
from rules.policy_file import parse_policy
from rules.replay import Replay, event_order

T0 = to_micros(datetime.fromisoformat("2024-01-01T00:00:00+00:00"))
US = 1  # one microsecond, the finest step of an instant


def day(n: float) -> int:
    """The instant `n` days after T0 (2024-01-01T00:00Z), in epoch microseconds."""
    return T0 + round(n * MICROS_PER_DAY)


def micros(text: str) -> int:
    return to_micros(datetime.fromisoformat(text))


def raw(event: Event) -> bytes:
    """The event as a producer sends it: JSON, as the contract has it."""
    fields = {"type": event.type, **msgspec.structs.asdict(event)}
    fields["occurred_at"] = format_instant(fields.pop("at"))
    return json.dumps({k: v for k, v in fields.items() if v is not None}).encode()


def _event(fields: dict[str, Any]) -> Event:
    return event_from_fields({k: v for k, v in fields.items() if v is not None})


def order(customer: str, at: int, amount: float | str, order_id: str | None = None,
          event_id: str | None = None, currency: str = "CNY") -> Event:
    order_id = order_id or f"o-{customer}-{at}"
    return _event({"type": "order_completed", "event_id": event_id or f"completed:{order_id}",
                   "customer_id": customer, "occurred_at": format_instant(at),
                   "order_id": order_id, "amount": amount, "currency": currency})


def refund(customer: str, at: int, amount: float | str, order_id: str,
           event_id: str | None = None, currency: str = "CNY") -> Event:
    return _event({"type": "order_refunded", "event_id": event_id or f"refund:{order_id}:{at}",
                   "customer_id": customer, "occurred_at": format_instant(at),
                   "order_id": order_id, "amount": amount, "currency": currency})


def full_refund(customer: str, at: int, order_id: str, event_id: str | None = None) -> Event:
    """A refund without an amount: what is left of the order."""
    return _event({"type": "order_refunded", "event_id": event_id or f"refund:{order_id}:{at}",
                   "customer_id": customer, "occurred_at": format_instant(at),
                   "order_id": order_id})


def cancel(customer: str, at: int, order_id: str, event_id: str | None = None) -> Event:
    return _event({"type": "order_cancelled", "event_id": event_id or f"cancel:{order_id}",
                   "customer_id": customer, "occurred_at": format_instant(at),
                   "order_id": order_id})


def touch(customer: str, at: int, kind: str = "visit", event_id: str | None = None,
          score: float | None = None, owner: str | None = None) -> Event:
    return _event({"type": "interaction", "event_id": event_id or f"touch:{customer}:{kind}:{at}",
                   "customer_id": customer, "occurred_at": format_instant(at), "kind": kind,
                   "score": score, "owner": owner})


def erase(customer: str, at: int, event_id: str | None = None) -> Event:
    return _event({"type": "customer_erased", "event_id": event_id or f"erase:{customer}:{at}",
                   "customer_id": customer, "occurred_at": format_instant(at)})


# A policy bug: `10 / orders_30d` divides by zero once an order has left the 30-day window.
FAILING_POLICY = """\
name: failing
version: "1"
currency: CNY
windows: [30d]
tiers:
  - id: A
    when: orders_30d >= 1
  - id: B
churn:
  - id: bursty
    when: 10 / orders_30d > 100
"""


def policy(yaml_text: str, file: str = "<test>") -> CompiledPolicy:
    """A CompiledPolicy from inline YAML (dedented, so it can be indented in the test)."""
    return parse_policy(textwrap.dedent(yaml_text), file)


def fold(events: Iterable[Event], compiled: CompiledPolicy,
         state: CustomerState | None = None) -> tuple[CustomerState | None, list[Output]]:
    """Apply events to one customer's state in the given order with `rules.engine.apply`."""
    outputs: list[Output] = []
    for event in events:
        state, more = apply(state, event, compiled)
        outputs += more
    return state, outputs


def replay(events: Iterable[Event], compiled: CompiledPolicy,
           until: int | None = None) -> tuple[Replay, list[Output]]:
    """Replay events in event order, then let time pass up to `until` if given."""
    run = Replay(compiled)
    outputs: list[Output] = []
    for event in sorted(events, key=event_order):
        outputs += run.feed(event)
    if until is not None:
        outputs += run.advance_to(until)
    return run, outputs


def short(kind: str) -> str:
    """`tierstream.tier.upgraded` -> `upgraded`, `tierstream.churn.warning` -> `churn.warning`."""
    kind = kind.removeprefix("tierstream.")
    return kind.removeprefix("tier.")


def steps(outputs: Iterable[Output]) -> list[tuple[int, str, str | None, str | None]]:
    """(instant, short type, from_tier, to_tier) of each tier and churn output, the shape most
    tests assert (follow-ups: tests/test_followup.py)."""
    return [(micros(o.time), short(o.type), o.data.from_tier, o.data.to_tier) for o in outputs
            if isinstance(o.data, Decision)]
