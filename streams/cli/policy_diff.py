"""`tierstream policy diff`: the what-if before a rollout: who would move where under a new policy.

From history (`--events`): both policies replay the same events to the same instant, so each side
has its own hysteresis and grace periods, exactly what running it live would have produced.
From the live table (`--live`): the worker's changelog gives every customer's current state; the
current tier is compared with the tier the new policy makes the customer eligible for now (no
grace period can have started under a policy that never ran). Each further axis of either
policy (`axes`, e.g. lifecycle) gets a transition matrix of its own, compared the same way.
State keeps only the facts the old policy needs, so a new policy with a longer window sees a
truncated history: use `--events`.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table

from models import stored
from models.errors import InvalidEventError
from models.events import Event
from models.instants import format_instant
from models.state import CustomerState
from rules.compiled import CompiledPolicy
from rules.replay import Replay, event_order

NO_TIER = "-"
EXAMPLES_PER_MOVE = 3


@dataclass
class Move:
    customer: str
    metrics: dict[str, Any]  # the values the new policy decided on


@dataclass
class PolicyDiff:
    old: CompiledPolicy
    new: CompiledPolicy
    as_of: int | None = None
    customers: int = 0
    moves: Counter[tuple[str, str]] = field(default_factory=Counter)
    examples: dict[tuple[str, str], list[Move]] = field(default_factory=lambda: defaultdict(list))
    # per axis of either policy: (old class, new class) -> customers
    axes: dict[str, Counter[tuple[str, str]]] = field(default_factory=dict)

    def add(self, customer: str, old_tier: str | None, new_tier: str | None,
            metrics: dict[str, Any], old_classes: dict[str, str] | None = None,
            new_classes: dict[str, str] | None = None) -> None:
        move = (old_tier or NO_TIER, new_tier or NO_TIER)
        self.customers += 1
        self.moves[move] += 1
        if move[0] != move[1] and len(self.examples[move]) < EXAMPLES_PER_MOVE:
            self.examples[move].append(Move(customer, metrics))
        old_classes, new_classes = old_classes or {}, new_classes or {}
        for axis in dict.fromkeys((*self.old.axis_names, *self.new.axis_names)):
            self.axes.setdefault(axis, Counter())[
                old_classes.get(axis, NO_TIER), new_classes.get(axis, NO_TIER)] += 1

    @property
    def moved(self) -> int:
        return sum(n for (a, b), n in self.moves.items() if a != b)

    def sizes(self) -> list[tuple[str, int, int]]:
        """(tier, customers under old, customers under new) for every tier of either policy."""
        old, new = Counter(), Counter()
        for (a, b), n in self.moves.items():
            old[a] += n
            new[b] += n
        return [(tier, old[tier], new[tier]) for tier in self.tiers()]

    def tiers(self) -> list[str]:
        return _labels(self.old.tier_ids, self.new.tier_ids, self.moves)

    def classes(self, axis: str) -> list[str]:
        return _labels(*(next((a.ids for a in p.axes if a.axis == axis), ())
                         for p in (self.old, self.new)), self.axes[axis])


def _labels(old: tuple[str, ...], new: tuple[str, ...], moves: Counter[tuple[str, str]]
            ) -> list[str]:
    """The rungs of both policies in order, then any other seen (a removed one, none: -)."""
    ordered = list(dict.fromkeys((*old, *new)))
    seen = {t for move in moves for t in move}
    return ordered + sorted(seen - set(ordered))


def from_events(events: Iterable[Event], old: CompiledPolicy, new: CompiledPolicy,
                as_of: int | None = None) -> tuple[PolicyDiff, Counter[str]]:
    """Replay the events through both policies; also returns rejected events by reason."""
    rejected: Counter[str] = Counter()
    replays = Replay(old), Replay(new)
    for event in sorted(events, key=event_order):
        for replay in replays:
            try:
                replay.feed(event)
            except InvalidEventError as error:  # e.g. a currency only one policy can convert
                rejected[f"{replay.policy.name}: {error.reason}"] += 1
            for failed, failed_event in replay.take_failed():  # time-driven ones are no event
                if failed_event is not None:
                    reason = getattr(failed.error, "reason", "policy_error")
                    rejected[f"{replay.policy.name}: {reason}"] += 1
    clocks = [r.clock for r in replays if r.clock is not None]
    last = max(clocks, default=None)
    if as_of is not None and last is not None and as_of < last:
        raise ValueError(f"--as-of {format_instant(as_of)} is before the last event "
                         f"({format_instant(last)})")
    end = as_of if as_of is not None else last
    diff = PolicyDiff(old, new, end)
    if end is None:
        return diff, rejected
    for replay in replays:
        replay.advance_to(end)
    before, after = (r.states for r in replays)
    for customer in sorted(before.keys() | after.keys()):
        state = after.get(customer)
        metrics = {} if state is None else \
            _decisive(new, new.values(state, end, replays[1].population))
        diff.add(customer, _tier(before.get(customer)), _tier(state), metrics,
                 _classes(before.get(customer)), _classes(state))
    return diff, rejected


def from_states(states: Iterable[CustomerState], old: CompiledPolicy, new: CompiledPolicy,
                as_of: int) -> PolicyDiff:
    """Current tiers against the tiers the new policy makes each customer eligible for."""
    diff = PolicyDiff(old, new, as_of)
    for state in sorted(states, key=lambda s: s.customer_id):
        at = max(as_of, state.clock)
        values = new.values(state, at)
        diff.add(state.customer_id, state.tier, new.tier_ids[new.eligible(values)],
                 _decisive(new, values), _classes(state),
                 {axis.axis: axis.ids[axis.eligible(values)] for axis in new.axes})
    return diff


def changelog_states(values: Iterable[bytes | None]) -> Iterator[CustomerState]:
    """Customer states from the latest changelog value of each key; tombstones are skipped."""
    for value in values:
        if value:
            yield stored.decode(value)[1]


def _tier(state: CustomerState | None) -> str | None:
    return None if state is None else state.tier


def _classes(state: CustomerState | None) -> dict[str, str]:
    return {} if state is None else state.classes()


def _decisive(policy: CompiledPolicy, values: dict[str, Any]) -> dict[str, Any]:
    """The metrics the policy's tier conditions read, rounded for reading."""
    return {k: round(v, 2) if isinstance(v, float) else v for k, v in values.items()
            if k in policy.tier_variables}


def render(diff: PolicyDiff, console: Console) -> None:
    when = "" if diff.as_of is None else f" as of {format_instant(diff.as_of)}"
    console.print(f"[bold]{diff.old.name} {diff.old.version} -> {diff.new.name} "
                  f"{diff.new.version}[/]: {diff.customers} customers{when}, "
                  f"[bold]{diff.moved}[/] would change tier")
    console.print(_matrix("Transition matrix (rows: old tier, columns: new tier)",
                          diff.tiers(), diff.moves))
    sizes = Table(title="Tier sizes")
    for column in ("tier", "old", "new", "change"):
        sizes.add_column(column, justify="right" if column != "tier" else "left")
    for tier, old, new in diff.sizes():
        sizes.add_row(tier, str(old), str(new), f"{new - old:+d}" if new != old else "0")
    console.print(sizes)
    if diff.examples:
        examples = Table(title="Examples of each move, with the metrics the new policy used")
        for column in ("move", "customer", "metrics"):
            examples.add_column(column)
        for (a, b), moves in sorted(diff.examples.items()):
            for move in moves:
                examples.add_row(f"{a} -> {b}", move.customer, ", ".join(
                    f"{k}={v}" for k, v in move.metrics.items()))
        console.print(examples)
    for axis, moves in diff.axes.items():
        moved = sum(n for (a, b), n in moves.items() if a != b)
        console.print(_matrix(f"Axis {axis}: {moved} would change class (rows: old class, "
                              "columns: new class)", diff.classes(axis), moves))


def _matrix(title: str, labels: list[str], moves: Counter[tuple[str, str]]) -> Table:
    matrix = Table(title=title)
    matrix.add_column("old \\ new")
    for label in labels:
        matrix.add_column(label, justify="right")
    for a in labels:
        cells = []
        for b in labels:
            n = moves.get((a, b), 0)
            cells.append("." if n == 0 else f"[bold]{n}[/]" if a != b else str(n))
        matrix.add_row(a, *cells)
    return matrix


def as_json(diff: PolicyDiff) -> dict[str, Any]:
    return {
        "old": {"name": diff.old.name, "version": diff.old.version},
        "new": {"name": diff.new.name, "version": diff.new.version},
        "as_of": None if diff.as_of is None else format_instant(diff.as_of),
        "customers": diff.customers, "moved": diff.moved,
        "matrix": [{"from": a, "to": b, "customers": n}
                   for (a, b), n in sorted(diff.moves.items())],
        "sizes": [{"tier": t, "old": o, "new": n} for t, o, n in diff.sizes()],
        "examples": [{"from": a, "to": b, "customer": m.customer, "metrics": m.metrics}
                     for (a, b), moves in sorted(diff.examples.items()) for m in moves],
        "axes": {axis: [{"from": a, "to": b, "customers": n}
                        for (a, b), n in sorted(moves.items())]
                 for axis, moves in diff.axes.items()},
    }
