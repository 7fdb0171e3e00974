"""Tier, axis, churn and follow-up decisions at one instant, and the next instant they could
change by time alone.

Upgrades apply at once. A customer eligible only for a lower tier gets a downgrade scheduled after
the grace period; it is cancelled if the customer qualifies again before then, and when due the
tier drops by at most max_steps (never below the eligible tier). Each further axis (a policy's
`axes`, e.g. lifecycle) is a ladder decided the same way, with its own hysteresis, after the
tier. Churn rules open an episode with one warning and close it with one recovery event.
"""

from __future__ import annotations

import uuid
from hashlib import sha1
from typing import Any

from msgspec.structs import replace

from models.instants import format_instant
from models.outputs import (
    SCHEMA_IDS,
    AxisChange,
    Decision,
    Followup,
    Output,
    format_sequence,
    source_of,
)
from models.state import RECENT_TRANSITIONS, CustomerState, Place, Transition
from rules import followup, horizon, metrics
from rules.compiled import CompiledPolicy, Ladder
from rules.relative import Population

_NAMESPACE = uuid.UUID("6f1f6bb0-4a7e-5a7e-9c55-7469657273f1")
_NAMESPACED = sha1(_NAMESPACE.bytes, usedforsecurity=False)  # the namespace, hashed
_VARIANT = "89ab"
Values = dict[str, Any]


class _Decision:
    """The state being decided on at instant t, and the events it emits, in order.

    `state` is the state as decided so far, replaced by each update.
    """

    def __init__(self, state: CustomerState, policy: CompiledPolicy, t: int,
                 population: Population | None) -> None:
        self.policy, self.t = policy, t
        self.state = state
        self.tier_before = state.tier
        self.orders = metrics.counted_orders(state, t)
        self.windows: dict[str, metrics.Window] = {}
        self.values = policy.values(state, t, population, self.orders, self.windows)
        self.outputs: list[Output] = []
        self._time = self._source = ""  # of its outputs, once one is sent

    def update(self, **changes: Any) -> None:
        self.state = replace(self.state, **changes)

    def move(self, kind: str, to_tier: str, *, rule: str, reason: str) -> None:
        self.emit(kind, self.state.tier, to_tier, rule, reason, self.tier_inputs())
        self.update(tier=to_tier, tier_since=self.t, downgrade_due=None, downgrade_warned=False)
        if "tier" in self.values:
            self.values["tier"] = to_tier
        if "days_in_tier" in self.values:
            self.values["days_in_tier"] = 0.0

    def emit(self, kind: str, from_tier: str | None, to_tier: str | None, rule: str,
             reason: str, inputs: Values, **extra: Any) -> None:
        self.send(kind, from_tier, to_tier, rule, Decision(
            customer_id=self.state.customer_id, from_tier=from_tier, to_tier=to_tier,
            policy=self.policy.reference, rule=rule, reason=reason, metrics=inputs, **extra))

    def send(self, kind: str, from_tier: str | None, to_tier: str | None, rule: str,
             data: Decision | Followup | AxisChange, axis: str | None = None) -> None:
        """Emit an output; the latest ones but axis moves are remembered in `recent`."""
        sequence = self.state.sequence + 1
        if axis is None:
            recent = (*self.state.recent, Transition(kind, self.t, from_tier, to_tier, rule))
            self.update(sequence=sequence, recent=recent[-RECENT_TRANSITIONS:])
        else:
            self.update(sequence=sequence)
        policy, customer = self.policy, self.state.customer_id
        if not self._time:
            self._time, self._source = format_instant(self.t), source_of(policy.sources, customer)
        # Same input, same id; a different decision under the same sequence, a different id.
        key = f"{policy.name}\n{policy.version}\n{customer}\n{self.state.created_at}\n" \
              f"{sequence}\n{kind}\n{from_tier}\n{to_tier}\n{rule}\n{self.t}"
        self.outputs.append(Output(
            id=uuid5(f"{key}\n{axis}" if axis else key), source=self._source,
            type=f"tierstream.{kind}", subject=customer, time=self._time,
            sequence=format_sequence(sequence), partitionkey=customer,
            dataschema=SCHEMA_IDS[kind.partition(".")[0]], data=data))

    def tier_inputs(self) -> Values:
        return {name: self.values[name] for name in self.policy.tier_variables}


def uuid5(name: str) -> str:
    """str(uuid.uuid5(_NAMESPACE, name)) without building a UUID object."""
    digest = _NAMESPACED.copy()  # (cheaper than a new hash, which looks its algorithm up)
    digest.update(name.encode())
    x = digest.hexdigest()
    # version 5 in the 13th digit, the RFC 4122 variant in the two top bits of the 17th
    return f"{x[:8]}-{x[8:12]}-5{x[13:16]}-{_VARIANT[int(x[16], 16) & 3]}{x[17:20]}-{x[20:32]}"


def evaluate(state: CustomerState, policy: CompiledPolicy, t: int,
             population: Population | None = None) -> tuple[CustomerState, list[Output]]:
    """Decide tier and churn at instant t; returns the new state and what it emitted.

    Relative metrics are placed in `population` (see rules/relative.py for None).
    """
    decision = _Decision(state, policy, t, population)
    # A move changes `tier` and `days_in_tier`; conditions that read them are decided again.
    for _ in range(len(policy.tier_ids) if policy.tiers_read_tier else 1):
        if not _decide_tier(decision):
            break
    if policy.axes or state.axes:
        _decide_axes(decision)
    _decide_churn(decision)
    if policy.followups:
        _decide_followup(decision)
    decision.update(clock=t, failures=0, next_change_at=horizon.next_change(
        decision.state, policy, decision.values, t, population, decision.orders,
        decision.windows))
    return decision.state, decision.outputs


class _TierSeat:
    """Where the value tier lives in the state, and its events (tier.*)."""

    def get(self, d: _Decision) -> tuple[str | None, int | None, bool]:
        return d.state.tier, d.state.downgrade_due, d.state.downgrade_warned

    def schedule(self, d: _Decision, due: int | None) -> None:
        d.update(downgrade_due=due, downgrade_warned=False)

    def move(self, d: _Decision, kind: str, to: str, rule: str, reason: str) -> None:
        d.move(f"tier.{kind}", to, rule=rule, reason=reason)

    def warn(self, d: _Decision, lower: str, rule: str, reason: str, due: int) -> None:
        d.emit("tier.downgrade_warning", d.state.tier, lower, rule, reason, d.tier_inputs(),
               due_at=format_instant(due))
        d.update(downgrade_warned=True)


class _AxisSeat:
    """Where the customer's place on an axis lives in the state (`axes[index]`), and its
    events (axis.*); a place of class "" is none yet."""

    def __init__(self, ladder: Ladder, index: int) -> None:
        self.ladder, self.index = ladder, index

    def get(self, d: _Decision) -> tuple[str | None, int | None, bool]:
        place = d.state.axes[self.index]
        return place.name or None, place.downgrade_due, place.downgrade_warned

    def _put(self, d: _Decision, place: Place) -> None:
        axes = d.state.axes
        d.update(axes=(*axes[:self.index], place, *axes[self.index + 1:]))

    def schedule(self, d: _Decision, due: int | None) -> None:
        place = d.state.axes[self.index]  # (a NamedTuple's _replace is a Python call)
        self._put(d, Place(place.axis, place.name, place.since, due, False))

    def move(self, d: _Decision, kind: str, to: str, rule: str, reason: str) -> None:
        self._send(d, kind, to, rule, reason)
        self._put(d, Place(self.ladder.axis, to, d.t))

    def warn(self, d: _Decision, lower: str, rule: str, reason: str, due: int) -> None:
        self._send(d, "downgrade_warning", lower, rule, reason, due_at=format_instant(due))
        place = d.state.axes[self.index]
        self._put(d, Place(place.axis, place.name, place.since, place.downgrade_due, True))

    def _send(self, d: _Decision, kind: str, to: str, rule: str, reason: str,
              due_at: str | None = None) -> None:
        ladder, current = self.ladder, d.state.axes[self.index].name or None
        d.send(f"axis.{kind}", current, to, rule, AxisChange(
            customer_id=d.state.customer_id, axis=ladder.axis, from_class=current, to_class=to,
            policy=d.policy.reference, rule=rule, reason=reason,
            metrics={name: d.values[name] for name in ladder.variables}, due_at=due_at),
            axis=ladder.axis)


_TIER = _TierSeat()
Seat = _TierSeat | _AxisSeat


def _decide_tier(d: _Decision) -> bool:
    """Apply the tier rules at d.t; True if the tier moved."""
    return _decide_ladder(d, d.policy.tier, _TIER)


def _decide_axes(d: _Decision) -> None:
    axes, names = d.state.axes, d.policy.axis_names
    if tuple(place.axis for place in axes) != names:  # new, or the policy's axes changed
        # (a place on an axis the policy no longer has is dropped)
        kept = {place.axis: place for place in axes}
        d.update(axes=tuple(kept.get(name, Place(name, "", d.t)) for name in names))
    for index, ladder in enumerate(d.policy.axes):
        _decide_ladder(d, ladder, _AxisSeat(ladder, index))


def _decide_ladder(d: _Decision, ladder: Ladder, seat: Seat) -> bool:
    """Apply a ladder's rules at d.t; True if the customer moved on it."""
    ids = ladder.ids
    target = ladder.eligible(d.values)
    why = ladder.reasons[target]
    name, due, _ = seat.get(d)
    if name not in ids:
        seat.move(d, "assigned", ids[target], ids[target], why)
        return True
    current = ids.index(name)
    if target < current:
        seat.move(d, "upgraded", ids[target], ids[target], why)
        return True
    if target == current:
        if due is not None:
            seat.schedule(d, None)
        return False
    if due is None:
        due = d.t + ladder.grace
        seat.schedule(d, due)
    moved = d.t >= due
    if moved:
        current = _downgrade(d, ladder, seat, current, target, why)
    if current < target:
        _warn(d, ladder, seat, current, target, why)
    return moved


def _downgrade(d: _Decision, ladder: Ladder, seat: Seat, current: int, target: int,
               why: str) -> int:
    """Move down max_steps at a time; a new grace period starts while above the target."""
    ids = ladder.ids
    while current < target:
        lower = min(current + ladder.max_steps, target)
        grace = f"after the {ladder.grace_text} grace period" if ladder.grace else \
            "at once (no grace period)"
        seat.move(d, "downgraded", ids[lower], ids[target],
                  f"{why}; no longer qualifies for {ids[current]}, moved down {grace}")
        current = lower
        if current < target and ladder.grace:
            seat.schedule(d, d.t + ladder.grace)
            break
    return current


def _warn(d: _Decision, ladder: Ladder, seat: Seat, current: int, target: int,
          why: str) -> None:
    """One downgrade_warning per grace period, warn_before ahead of the downgrade."""
    ids = ladder.ids
    _, due, warned = seat.get(d)
    if due is None or warned or not ladder.warn_before or d.t < due - ladder.warn_before:
        return
    lower = ids[min(current + ladder.max_steps, target)]
    seat.warn(d, lower, ids[target], f"{why}; moves down to {lower} at {format_instant(due)} "
              f"unless it qualifies for {ids[current]} again", due)


def _decide_churn(d: _Decision) -> None:
    rule = d.policy.churn_rule(d.values)
    open_rule = d.state.churn_rule
    if rule is not None and open_rule is None:
        condition = dict(d.policy.churn_conditions)[rule]
        d.emit("churn.warning", d.state.tier, d.state.tier, rule,
               f"churn rule {rule} holds: {condition.source}", condition.inputs(d.values),
               churn_rule=rule)
        d.update(churn_rule=rule, churn_since=d.t)
    elif rule is None and open_rule is not None:
        since = format_instant(d.t if d.state.churn_since is None else d.state.churn_since)
        inputs = {v: d.values[v] for _, c in d.policy.churn_conditions for v in c.variables}
        d.emit("churn.recovered", d.state.tier, d.state.tier, open_rule,
               f"no churn rule holds any more (episode opened by {open_rule} at {since})",
               dict(sorted(inputs.items())), churn_rule=open_rule)
        d.update(churn_rule=None, churn_since=None)


def _decide_followup(d: _Decision) -> None:
    """Close the open follow-up on a newer contact (followup.done) or a move to another tier,
    report it overdue, open the next one once due (rules/followup.py)."""
    state, t = d.state, d.t
    plan = d.policy.followups.get(state.tier or "")
    if state.followup_due is not None:
        contacted = state.contact_at != state.followup_from
        if contacted and plan is not None and state.contact_at is not None:
            _followup(d, "followup.done", plan, f"contacted at "
                      f"{format_instant(state.contact_at)}, follow-up closed")
        if contacted or state.tier != d.tier_before:
            d.update(followup_due=None, followup_from=None, followup_overdue=False)
    if plan is None:
        return
    opened = d.state.followup_due
    if opened is None:
        opened = followup.due(d.state, plan)
        if opened > t:
            return
        d.update(followup_due=opened, followup_from=d.state.contact_at, followup_overdue=False)
        _followup(d, "followup.due", plan, _silence(d.state, plan))
    if not d.state.followup_overdue and plan.escalate is not None and \
            t >= opened + plan.escalate:
        _followup(d, "followup.overdue", plan, f"{_silence(d.state, plan)}; still no contact "
                  f"{plan.escalation} after it fell due")
        d.update(followup_overdue=True)


def _silence(state: CustomerState, plan: followup.Plan) -> str:
    last = "no contact yet" if state.contact_at is None else \
        f"last contact {format_instant(state.contact_at)}"
    return f"{state.tier} is contacted every {plan.cadence} ({plan.channel}); {last}"


def _followup(d: _Decision, kind: str, plan: followup.Plan, reason: str) -> None:
    state = d.state
    assert state.tier is not None and state.followup_due is not None
    d.send(kind, state.tier, state.tier, state.tier, Followup(
        customer_id=state.customer_id, tier=state.tier, policy=d.policy.reference,
        cadence=plan.cadence, channel=plan.channel, due_at=format_instant(state.followup_due),
        last_contact_at=None if state.contact_at is None else format_instant(state.contact_at),
        owner=state.owner, reason=reason))


def explain(state: CustomerState, policy: CompiledPolicy, t: int,
            population: Population | None = None) -> dict[str, Any]:
    """Why the customer has its tier at t: eligibility, pending downgrade, churn, metrics, and
    its follow-up and classes on further axes under a policy with them."""
    values = policy.values(state, t, population)
    eligible = policy.eligible(values)
    due = state.downgrade_due
    return {
        "customer_id": state.customer_id, "tier": state.tier,
        "since": None if state.tier_since is None else format_instant(state.tier_since),
        "eligible_tier": policy.tier_ids[eligible], "reason": policy.reasons[eligible],
        "downgrade_due": None if due is None else format_instant(due),
        "churn": state.churn_rule is not None, "churn_rule": state.churn_rule,
        "policy": {"name": policy.name, "version": policy.version},
        "as_of": format_instant(t), "metrics": values,
        "next_change_at": None if state.next_change_at is None
        else format_instant(state.next_change_at),
        "recent": [{"type": f"tierstream.{r.type}", "time": format_instant(r.at),
                    "from_tier": r.from_tier, "to_tier": r.to_tier, "rule": r.rule}
                   for r in reversed(state.recent)],
        **({"followup": _followup_now(state, policy)} if policy.followups else {}),
        **({"axes": _axes_now(state, policy, values)} if policy.axes else {}),
    }


def _axes_now(state: CustomerState, policy: CompiledPolicy, values: Values
              ) -> dict[str, dict[str, Any]]:
    """The customer's class on each axis: since when, the one it is eligible for and why."""
    places = {place.axis: place for place in state.axes}
    found = {}
    for ladder in policy.axes:
        place, eligible = places.get(ladder.axis), ladder.eligible(values)
        found[ladder.axis] = {
            "class": place.name if place else None,
            "since": format_instant(place.since) if place else None,
            "eligible_class": ladder.ids[eligible], "reason": ladder.reasons[eligible],
            "downgrade_due": format_instant(place.downgrade_due)
            if place and place.downgrade_due is not None else None}
    return found


def _followup_now(state: CustomerState, policy: CompiledPolicy) -> dict[str, Any] | None:
    """The customer's follow-up: its tier's plan, the open one or when the next falls due."""
    plan = policy.followups.get(state.tier or "")
    if plan is None:
        return None
    due = state.followup_due if state.followup_due is not None else followup.due(state, plan)
    return {"cadence": plan.cadence, "channel": plan.channel,
            "open": state.followup_due is not None, "overdue": state.followup_overdue,
            "due_at": format_instant(due),
            "last_contact_at": None if state.contact_at is None
            else format_instant(state.contact_at), "owner": state.owner}
