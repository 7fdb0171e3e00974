"""Tier and churn decisions at one instant, and the next instant they could change by time alone.

Upgrades apply at once. A customer eligible only for a lower tier gets a downgrade scheduled after
the grace period; it is cancelled if the customer qualifies again before then, and when due the
tier drops by at most max_steps (never below the eligible tier). Churn rules open an episode with
one warning and close it with one recovery event.
"""

from __future__ import annotations

import uuid
from hashlib import sha1
from typing import Any

from msgspec.structs import replace

from models.instants import format_instant
from models.outputs import Decision, Followup, Output
from models.state import RECENT_TRANSITIONS, CustomerState, Transition
from rules import followup, horizon, metrics
from rules.compiled import CompiledPolicy
from rules.relative import Population

_NAMESPACE = uuid.UUID("6f1f6bb0-4a7e-5a7e-9c55-7469657273f1")
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
             data: Decision | Followup) -> None:
        sequence = self.state.sequence + 1
        recent = (*self.state.recent, Transition(kind, self.t, from_tier, to_tier, rule))
        self.update(sequence=sequence, recent=recent[-RECENT_TRANSITIONS:])
        policy, customer = self.policy, self.state.customer_id
        # Same input, same id; a different decision under the same sequence, a different id.
        key = "\n".join(map(str, (policy.name, policy.version, customer, self.state.created_at,
                                  sequence, kind, from_tier, to_tier, rule, self.t)))
        self.outputs.append(Output(
            id=uuid5(key), source=policy.source,
            type=f"tierstream.{kind}", subject=customer, time=format_instant(self.t),
            sequence=str(sequence), data=data))

    def tier_inputs(self) -> Values:
        return {name: self.values[name] for name in self.policy.tier_variables}


def uuid5(name: str) -> str:
    """str(uuid.uuid5(_NAMESPACE, name)) without building a UUID object."""
    digest = bytearray(sha1(_NAMESPACE.bytes + name.encode(), usedforsecurity=False).digest())
    digest[6] = digest[6] & 0x0F | 0x50  # version 5
    digest[8] = digest[8] & 0x3F | 0x80  # RFC 4122 variant
    x = digest[:16].hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


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
    _decide_churn(decision)
    if policy.followups:
        _decide_followup(decision)
    decision.update(clock=t, failures=0, next_change_at=horizon.next_change(
        decision.state, policy, decision.values, t, population, decision.orders,
        decision.windows))
    return decision.state, decision.outputs


def _decide_tier(d: _Decision) -> bool:
    """Apply the tier rules at d.t; True if the tier moved."""
    ids, policy = d.policy.tier_ids, d.policy
    target = policy.eligible(d.values)
    why = policy.reasons[target]
    if d.state.tier not in ids:
        d.move("tier.assigned", ids[target], rule=ids[target], reason=why)
        return True
    current = ids.index(d.state.tier)
    if target < current:
        d.move("tier.upgraded", ids[target], rule=ids[target], reason=why)
        return True
    if target == current:
        if d.state.downgrade_due is not None:
            d.update(downgrade_due=None, downgrade_warned=False)
        return False
    due = d.state.downgrade_due
    if due is None:
        due = d.t + policy.grace
        d.update(downgrade_due=due, downgrade_warned=False)
    moved = d.t >= due
    if moved:
        current = _downgrade(d, current, target, why)
    if current < target:
        _warn(d, current, target, why)
    return moved


def _downgrade(d: _Decision, current: int, target: int, why: str) -> int:
    """Move down max_steps at a time; a new grace period starts while above the target."""
    ids, policy = d.policy.tier_ids, d.policy
    while current < target:
        lower = min(current + policy.max_steps, target)
        grace = f"after the {policy.policy.downgrade.grace} grace period" if policy.grace else \
            "at once (no grace period)"
        d.move("tier.downgraded", ids[lower], rule=ids[target],
               reason=f"{why}; no longer qualifies for {ids[current]}, moved down {grace}")
        current = lower
        if current < target and policy.grace:
            d.update(downgrade_due=d.t + policy.grace)
            break
    return current


def _warn(d: _Decision, current: int, target: int, why: str) -> None:
    """One tier.downgrade_warning per grace period, warn_before ahead of the downgrade."""
    ids, policy, due = d.policy.tier_ids, d.policy, d.state.downgrade_due
    if due is None or d.state.downgrade_warned or not policy.warn_before or \
            d.t < due - policy.warn_before:
        return
    lower = ids[min(current + policy.max_steps, target)]
    d.emit("tier.downgrade_warning", ids[current], lower, ids[target],
           f"{why}; moves down to {lower} at {format_instant(due)} unless it qualifies "
           f"for {ids[current]} again", d.tier_inputs(), due_at=format_instant(due))
    d.update(downgrade_warned=True)


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
    """Why the customer has its tier at t: eligibility, pending downgrade, churn, metrics."""
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
    }


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
