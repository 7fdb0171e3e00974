"""Follow-up cadence (定期回访): when a customer of a tier with a plan must be contacted next.

A tier's plan (policy `followup.tiers`) says how long its customers may go without a contact: an
interaction of a counting kind (`followup.contacts`). A follow-up falls due `every` after the
latest contact (after the customer was first seen, with none), and never before the customer
entered its tier. Once due it stays open until a newer contact arrives (`followup.done`);
`escalate_after` past its due instant it is reported overdue once. A move to another tier
closes it without an event of its own and plans the new tier's: due at once when that cadence
has lapsed since the latest contact (up to A after a long silence), none in a tier without a
plan. Pure functions of the state; rules/decisions.py emits the outputs.
"""

from __future__ import annotations

from typing import NamedTuple

from msgspec.structs import replace

from models.events import Interaction
from models.instants import parse_duration
from models.policy import FollowupPlans
from models.state import CustomerState


class Plan(NamedTuple):
    every: int              # µs
    cadence: str            # as the policy writes it, e.g. "14d"
    channel: str
    escalate: int | None    # µs after falling due; None: never reported overdue
    escalation: str | None  # as the policy writes it


def plans(followup: FollowupPlans | None) -> dict[str, Plan]:
    """The plan of each tier that has one."""
    if followup is None:
        return {}
    return {tier: Plan(parse_duration(p.every), p.every, p.channel,
                       None if p.escalate_after is None else parse_duration(p.escalate_after),
                       p.escalate_after)
            for tier, p in followup.tiers.items()}


def contacted(state: CustomerState, event: Interaction, t: int, contacts: frozenset[str]
              ) -> CustomerState | None:
    """The state with the interaction as its latest contact, or None when it is not a newer
    contact (another kind, a redelivery, or a late one before the latest)."""
    if event.kind not in contacts or (state.contact_at is not None and t <= state.contact_at):
        return None
    return replace(state, contact_at=t, owner=event.owner or state.owner)


def since_contact(state: CustomerState) -> int:
    """The latest contact, or the customer's first-seen instant with none."""
    return state.contact_at if state.contact_at is not None else state.created_at


def due(state: CustomerState, plan: Plan) -> int:
    """When the customer's next follow-up falls due under `plan` (with none open)."""
    entered = state.tier_since if state.tier_since is not None else state.created_at
    return max(since_contact(state) + plan.every, entered)


def next_change(state: CustomerState, plan: Plan | None) -> int | None:
    """The instant after the last decision at which time alone moves the follow-up on."""
    if plan is None:
        return None
    if state.followup_due is None:
        return due(state, plan)
    if state.followup_overdue or plan.escalate is None:
        return None
    return state.followup_due + plan.escalate
