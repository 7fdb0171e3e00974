"""The policy schema (design section 4): tiers best first, downgrade hysteresis, churn rules,
follow-up plans and further classifications (axes)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from models.event_contract import InteractionKind
from models.instants import parse_duration

RuleId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")]


def _duration(text: str) -> str:
    parse_duration(text)
    return text


Duration = Annotated[str, AfterValidator(_duration)]


class PolicyShapeError(ValueError):
    """A rule across fields; `location` points at the offending item for error messages."""

    def __init__(self, message: str, location: tuple[str | int, ...]) -> None:
        super().__init__(message)
        self.location = location


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TierRule(_Strict):
    id: RuleId
    label: str | None = None
    when: str | None = Field(default=None, min_length=1)


class Downgrade(_Strict):
    grace: Duration = "0d"
    max_steps: int = Field(default=1, ge=1)
    warn_before: Duration = "0d"


class ChurnRule(_Strict):
    id: RuleId
    label: str | None = None
    when: str = Field(min_length=1)


class FollowupPlan(_Strict):
    every: Duration                        # the longest a customer of the tier goes uncontacted
    channel: Literal["personal", "automated"] = "personal"   # who the plan says reaches out
    escalate_after: Duration | None = None  # followup.overdue this long after followup.due


class FollowupPlans(_Strict):
    """The follow-up cadence (定期回访) of each tier with a plan; tiers not named get none."""

    contacts: list[InteractionKind] = Field(min_length=1)  # interaction kinds that count
    tiers: dict[RuleId, FollowupPlan] = Field(min_length=1)


class Axis(_Strict):
    """A classification besides the value tier (e.g. lifecycle): classes best first, the last
    the default, with a hysteresis of its own."""

    label: str | None = None
    classes: list[TierRule] = Field(min_length=1)
    downgrade: Downgrade = Downgrade()


class RelativeOptions(_Strict):
    refresh: Duration = "1d"   # how often the population snapshot is retaken (UTC-aligned)


class Limits(_Strict):
    # Orders, refunds and interactions one customer's state may hold. The bound keeps a state
    # (at most ~330 bytes an item, with 128-character order and event ids) under Kafka's 1 MB
    # record limit and the cost of an event bounded; an event past it is dead-lettered
    # (customer_full).
    customer_items: int = Field(default=2000, ge=1, le=2500)
    # How long past the largest window a customer's orders stay one by one (ids, amounts), so
    # redeliveries, refunds and cancellations of them apply exactly; older orders are folded
    # into totals (rules/history.py) and an order event placed before that is dead-lettered
    # (beyond_history).
    redelivery_horizon: Duration = "30d"


class Policy(_Strict):
    name: RuleId
    version: str = Field(min_length=1, max_length=64)
    description: str | None = None
    currency: str = Field(default="CNY", pattern=r"^[A-Z]{3}$")
    rates: dict[Annotated[str, Field(pattern=r"^[A-Z]{3}$")],
                Annotated[float, Field(gt=0, allow_inf_nan=False)]] = {}
    model: str | None = Field(default=None, min_length=1)  # a model file, for p_alive, clv_<w>
    windows: list[Duration] = []
    tiers: list[TierRule] = Field(min_length=1)
    downgrade: Downgrade = Downgrade()
    churn: list[ChurnRule] = []
    followup: FollowupPlans | None = None
    axes: dict[RuleId, Axis] = {}
    relative: RelativeOptions = RelativeOptions()   # for <metric>_pct and <metric>_share_above
    limits: Limits = Limits()

    @model_validator(mode="after")
    def _consistent(self) -> Policy:
        _check_ladder(self.tiers, "tier", ("tiers",))
        for name, axis in self.axes.items():
            if name == "tier":
                raise PolicyShapeError("`tier` is the value tier's axis; name this axis "
                                       "otherwise", ("axes", name))
            _check_ladder(axis.classes, "class", ("axes", name, "classes"))
        if self.currency in self.rates:
            raise PolicyShapeError(f"{self.currency} is the policy currency (rate 1); remove it "
                                   "from rates", ("rates", self.currency))
        for index, window in enumerate(self.windows):
            if parse_duration(window) == 0:
                raise PolicyShapeError("a window of zero length is always empty",
                                       ("windows", index))
        if parse_duration(self.relative.refresh) == 0:
            raise PolicyShapeError("the relative metrics' refresh must be longer than zero",
                                   ("relative", "refresh"))
        self._check_followup()
        lists: list[tuple[tuple[str, ...], list[str]]] = [
            (("tiers",), [t.id for t in self.tiers]), (("churn",), [c.id for c in self.churn]),
            (("windows",), self.windows)]
        lists += [(("axes", name, "classes"), [c.id for c in axis.classes])
                  for name, axis in self.axes.items()]
        for field, ids in lists:
            for index, item in enumerate(ids):
                if item in ids[:index]:
                    raise PolicyShapeError(f"{item} is listed more than once in "
                                           f"{'.'.join(field)}", (*field, index))
        return self

    def _check_followup(self) -> None:
        for tier, plan in (self.followup.tiers if self.followup else {}).items():
            if tier not in self.tier_ids:
                raise PolicyShapeError(f"follow-up plan for {tier}, which is not a tier "
                                       f"({', '.join(self.tier_ids)})", ("followup", "tiers", tier))
            for field, value in (("every", plan.every), ("escalate_after", plan.escalate_after)):
                if value is not None and parse_duration(value) == 0:
                    raise PolicyShapeError(f"a follow-up's {field} must be longer than zero"
                                           + (" (leave it out: never overdue)"
                                              if field == "escalate_after" else ""),
                                           ("followup", "tiers", tier, field))

    @property
    def tier_ids(self) -> tuple[str, ...]:
        return tuple(t.id for t in self.tiers)


def _check_ladder(rules: list[TierRule], noun: str, field: tuple[str, ...]) -> None:
    """Every rung but the last needs a condition; the last is the default and has none."""
    last = len(rules) - 1
    for index, rule in enumerate(rules):
        if index == last and rule.when is not None:
            raise PolicyShapeError(f"the last {noun} ({rule.id}) is the default {noun} and must "
                                   f"have no `when`; add a catch-all {noun} at the end",
                                   (*field, index, "when"))
        if index < last and rule.when is None:
            raise PolicyShapeError(f"{noun} {rule.id} needs a `when` condition; only the last "
                                   f"{noun} may have none", (*field, index))
