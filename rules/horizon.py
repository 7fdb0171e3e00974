"""When could time alone next change a customer's decision? The engine's wake-up instant.

Five things change with time and nothing else: a scheduled downgrade or its warning (of the tier
or of the class on an axis) falls due, a follow-up falls due, a window forgets an old event,
the time metrics (days since ...) grow, and the model metrics
(p_alive, expected_orders_<w>, clv_<w>) move at each UTC midnight. A relative metric of a time
metric (`days_since_last_order_pct`) moves when the growing value passes a value of the population
snapshot; a new snapshot itself is the caller's schedule (rules/replay.py refreshes).
Window expiries and model metrics are checked against the policy's thresholds: when every use
of such a metric is a plain comparison with a number (`orders_90d >= 3`, `p_alive < 0.3`), only
the instant that makes one of those comparisons flip matters, so a customer is woken once per
real change rather than once per expiring order or per day. Other uses of a model metric wake the
customer every midnight. A condition on time metrics wakes it where the condition changes, not
at each flip of one of its comparisons (rules/conditions.py). Under a policy whose conditions
change with time only as windows forget, a flip that changes no decision wakes no one either:
the customer is woken at the first expiry that changes its eligible tier, churn rule or class on
an axis.
"""

from __future__ import annotations

import math
import operator
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable
from itertools import accumulate
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from models.errors import PolicyEvaluationError
from models.state import CustomerState
from rules import followup, metrics, model_metrics, relative
from rules.comparisons import Comparison

if TYPE_CHECKING:
    from rules.compiled import CompiledPolicy
    from rules.relative import Population

Threshold = tuple[Callable[[Any, Any], bool], float]   # metric OP number
_OPERATORS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
              "==": operator.eq, "!=": operator.ne}
# Sums of non-negative amounts and counts: forgetting old items can only lower them.
_FALLING = ("orders", "interactions", "contacts", "revenue", "refunds")
_ORDERING = (operator.lt, operator.le, operator.gt, operator.ge)
_placed = attrgetter("at")
# Expiries tried on each decision at most: a metric compared other than with a number expires
# with each order, and a customer of many orders must not make every decision long.
EXPIRIES_TRIED = 8
_MIRRORED = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}


def thresholds(found: Iterable[Comparison], uses: dict[str, int]
               ) -> dict[str, tuple[Threshold, ...]]:
    """Metrics used only in `metric OP number` comparisons, with those comparisons.

    `uses` counts every occurrence of each metric name in the policy's conditions.
    """
    simple: dict[str, list[Threshold]] = {}
    for c in found:
        for name, number, op in ((c.left, c.right, c.operator),
                                 (c.right, c.left, _MIRRORED[c.operator])):
            value = _number(number)
            if name in uses and value is not None:
                simple.setdefault(name, []).append((_OPERATORS[op], value))
    return {name: tuple(items) for name, items in simple.items() if len(items) == uses[name]}


def _number(text: str) -> float | None:
    try:
        return float(text.rstrip("uU"))
    except ValueError:
        return None


def next_change(state: CustomerState, policy: CompiledPolicy, values: dict[str, Any],
                t: int, population: Population | None = None, orders: list | None = None,
                windows: dict[str, metrics.Window] | None = None) -> int | None:
    """The earliest instant after t at which time alone could change a decision, if any;
    `orders` are the state's metrics.counted_orders at t and `windows` the Windows of its
    windowed metrics at t, when the caller has them."""
    candidates = _scheduled(policy.tier.warn_before, state.downgrade_due,
                            state.downgrade_warned)
    for place, ladder in zip(state.axes, policy.axes, strict=False):
        if place.downgrade_due is not None:
            candidates += _scheduled(ladder.warn_before, place.downgrade_due,
                                     place.downgrade_warned)
    if policy.followups:
        candidates.append(followup.next_change(state, policy.followups.get(state.tier or "")))
    if orders is None:
        orders = metrics.counted_orders(state, t)
    # each windowed metric's Window at t and next expiry that matters, in policy.windowed order
    seen = [windows[m.name] for m in policy.windowed] if windows is not None else \
        [metrics.window(m, state, orders, t) for m in policy.windowed]
    expiries = [_window_change(m, policy, window, t)
                for m, window in zip(policy.windowed, seen, strict=True)]
    for m in policy.modelled:
        candidates.append(_model_change(m, state, orders, policy, values, t))
    if policy.time_bases and population is not None:
        anchors = metrics.time_anchors(state, policy.time_bases, orders)
        candidates += [relative.crossing(r, population, values[r.base], t,
                                         policy.thresholds.get(r.name))
                       for r in policy.relative if anchors.get(r.base) is not None]
    earliest = _soonest(candidates, t)
    if policy.windows_alone:
        earliest = _decisive_expiry(state, policy, values, seen, expiries, earliest)
    else:
        earliest = _earlier(earliest, _soonest(expiries, t))
    if policy.time_metrics:  # the walks over time conditions stop once past `earliest`
        anchors = metrics.time_anchors(state, policy.time_metrics, orders)
        for condition in policy.timed_conditions:
            flip = condition.next_flip(values, anchors, t, earliest)
            if flip is not None and flip > t and (earliest is None or flip < earliest):
                earliest = flip
    return earliest


def _scheduled(warn_before: int, due: int | None, warned: bool) -> list[int | None]:
    """A scheduled downgrade (of the tier or on an axis) and its warning still to send."""
    if due is None:
        return []
    return [due, due - warn_before] if warn_before and not warned else [due]


def _soonest(instants: list[int | None], t: int = -1) -> int | None:
    """The earliest of the instants after t (all of them by default: none is negative)."""
    soonest = None
    for at in instants:
        if at is not None and at > t and (soonest is None or at < soonest):
            soonest = at
    return soonest


def _decisive_expiry(state: CustomerState, policy: CompiledPolicy, values: dict[str, Any],
                     seen: list[metrics.Window], expiries: list[int | None], before: int | None
                     ) -> int | None:
    """The first window expiry that changes the customer's decision (its eligible tier, its
    churn rule, its eligible class on each axis) if it comes before `before` (the earliest other
    candidate), else `before`; for a policy whose conditions change with time only as windows
    forget (`windows_alone`).

    An expiry that flips a comparison may still decide nothing (`orders_90d >= 3` no longer
    holds, yet `revenue_365d >= 5000.0` keeps the customer in B); woken there, the customer
    would change nothing but its clock. So each expiry in turn is tried on the values after
    it. With the decision the same, a wake-up there changes nothing, provided the customer is
    settled in it (a tier condition that reads the tier can leave it eligible for another
    tier after as many moves as there are tiers): then it holds its eligible tier, or one above
    with a downgrade scheduled, which with its warning is among `before`. After EXPIRIES_TRIED
    expiries with the same decision, the next one is returned: the customer is woken there and
    decided, and tries the ones after it."""
    soonest = _soonest(expiries)
    try:
        decided = _decision(policy, values)
    except PolicyEvaluationError:  # (possible only once the tier moved as often as it may)
        return _earlier(soonest, before)
    if not _settled(state, policy, decided[0], decided[1], decided[2]):  # (no *: a C call)
        return _earlier(soonest, before)
    values = dict(values)
    for _ in range(EXPIRIES_TRIED):
        if soonest is None or (before is not None and soonest >= before):
            return before
        for i, metric in enumerate(policy.windowed):
            if expiries[i] == soonest:
                window = seen[i] = _slide(metric, seen[i], soonest)
                values[metric.name] = window.value
                expiries[i] = _window_change(metric, policy, window, soonest)
        try:
            if _decision(policy, values) != decided:
                return soonest
        except PolicyEvaluationError:
            return soonest  # decided there, where a failure is dealt with
        soonest = _soonest(expiries)
    return _earlier(soonest, before)


def _earlier(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def _settled(state: CustomerState, policy: CompiledPolicy, eligible: int, rule: str | None,
             axes: tuple[int, ...]) -> bool:
    """Whether deciding the state again on the same conditions would change nothing."""
    if (rule is None) != (state.churn_rule is None) or \
            tuple(place.axis for place in state.axes) != policy.axis_names:
        return False
    return _holds(policy.tier_ids, state.tier, state.downgrade_due, eligible) and all(
        _holds(ladder.ids, place.name, place.downgrade_due, index)
        for ladder, place, index in zip(policy.axes, state.axes, axes, strict=True))


def _holds(ids: tuple[str, ...], name: str | None, due: int | None, eligible: int) -> bool:
    """Whether a place on a ladder is settled: the eligible rung, or one above with a
    downgrade scheduled."""
    if name not in ids:
        return False
    current = ids.index(name)
    return eligible == current and due is None or eligible > current and due is not None


def _decision(policy: CompiledPolicy, values: dict[str, Any]
              ) -> tuple[int, str | None, tuple[int, ...]]:
    """What rules/decisions.py decides on: the eligible tier, the churn rule that holds and the
    eligible class on each axis."""
    return policy.tier.eligible(values), policy.churn_rule(values), \
        tuple([ladder.eligible(values) for ladder in policy.axes])


def _slide(metric: metrics.Windowed, seen: metrics.Window, t: int) -> metrics.Window:
    """The window `seen` at the later instant t: no new items, old ones forgotten."""
    inside, amounts = seen.items, seen.amounts
    start = bisect_right(inside, t - metric.micros, key=_placed)
    if amounts is None:
        return metrics.Window(inside[start:], None, len(inside) - start)
    return metrics.Window(inside[start:], amounts[start:],
                          metrics.of_amounts(metric, amounts[start:]))


def _window_change(metric: metrics.Windowed, policy: CompiledPolicy, seen: metrics.Window,
                   t: int) -> int | None:
    """First instant after t at which forgetting old events changes how `metric` compares,
    given what it counts at t (`seen`)."""
    inside, amounts, value = seen.items, seen.amounts, seen.value
    floor = policy.floors.get(metric.name)
    if floor is not None and not (value >= floor[0] or value > floor[1]):
        return None  # no comparison can flip while the value falls
    if not inside:
        return None
    checks = policy.thresholds.get(metric.name)
    if checks is None:
        return inside[0].at + metric.micros
    n = len(inside)
    if floor is not None:
        # each comparison flips at most once as the value falls: the fewest items forgotten
        # that flip one (a count, a sum: worked out); the item forgotten last goes with its
        # instant's group
        if amounts is None:
            count = int(value)  # (a count's value is an int)
            flip = _count_flip(count, checks)
            forgotten = None if flip is None else count - flip
        else:
            forgotten = _sum_flip(amounts, value, checks)
        if forgotten is not None:
            return inside[forgotten - 1].at + metric.micros if forgotten <= n else None
    now = [compare(value, number) for compare, number in checks]

    def flips(forgotten: int) -> bool:
        """Whether a comparison differs once the `forgotten` oldest items are."""
        left = n - forgotten if amounts is None else metrics.of_amounts(metric,
                                                                         amounts[forgotten:])
        return [compare(left, number) for compare, number in checks] != now

    if floor is not None:  # (thresholds not finite) by bisection
        forgotten = bisect_left(range(1, n + 1), True, key=flips) + 1
        return inside[forgotten - 1].at + metric.micros if forgotten <= n else None
    # items placed at one instant expire together: try the end of each such group
    ends = [i for i in range(n - 1) if inside[i + 1].at != inside[i].at]
    ends.append(n - 1)
    return next((inside[end].at + metric.micros for end in ends if flips(end + 1)), None)


def _count_flip(value: int, checks: tuple[Threshold, ...]) -> int | None:
    """For a count compared only by <, <=, >, >= with finite numbers: the largest count below
    `value` at which a comparison differs from at `value` (-1: none does), or None for other
    numbers. `>= c` and `< c` differ once the count is below c, `> c` and `<= c` once it is
    c or less."""
    largest = -1
    for compare, number in checks:
        if not math.isfinite(number):
            return None
        if compare in (operator.ge, operator.lt):
            if value >= number:
                largest = max(largest, math.ceil(number) - 1)
        elif value > number:
            largest = max(largest, math.floor(number))
    return largest


def _sum_flip(amounts: list[float], value: float, checks: tuple[Threshold, ...]) -> int | None:
    """For a sum of non-negative amounts (`value`, their fsum) compared only by <, <=, >, >=
    with finite numbers: the fewest of the oldest amounts whose forgetting makes a comparison
    differ from at `value` (len(amounts) + 1: none does), or None for other numbers.

    The running sums locate it at C speed; fsum then decides it exactly, as the value is
    computed (the sum left falls monotonically, so only the neighbours need checking)."""
    below = above = -math.inf  # a comparison differs once the sum left is < below or <= above
    for compare, number in checks:
        if not math.isfinite(number):
            return None
        if compare in (operator.ge, operator.lt):
            if value >= number:
                below = max(below, number)
        elif value > number:
            above = max(above, number)
    n = len(amounts)
    if below == above == -math.inf:
        return n + 1
    spent = list(accumulate(amounts))

    def flips(forgotten: int) -> bool:
        left = math.fsum(amounts[forgotten:])
        return left < below or left <= above

    forgotten = 1 + min(bisect_right(spent, value - below), bisect_left(spent, value - above))
    while forgotten > 1 and flips(forgotten - 1):
        forgotten -= 1
    while forgotten <= n and not flips(forgotten):
        forgotten += 1
    return forgotten


def floors(windowed: Iterable[metrics.Windowed], found: dict[str, tuple[Threshold, ...]]
           ) -> dict[str, tuple[float, float]]:
    """For each window sum or count compared only by <, <=, >, >= with numbers: (a, b) such
    that some comparison can still flip as the value falls iff value >= a or value > b.

    `>= c` and `< c` flip once the value drops below c, `> c` and `<= c` once it reaches c."""
    result = {}
    for metric in windowed:
        checks = found.get(metric.name)
        if metric.kind in _FALLING and checks and all(c in _ORDERING for c, _ in checks):
            inf = float("inf")
            result[metric.name] = (
                min((n for c, n in checks if c in (operator.ge, operator.lt)), default=inf),
                min((n for c, n in checks if c in (operator.gt, operator.le)), default=inf))
    return result


def _model_change(metric: model_metrics.ModelMetric, state: CustomerState, orders: list,
                  policy: CompiledPolicy, values: dict[str, Any], t: int) -> int | None:
    """First UTC midnight after t at which `metric` changes how a condition sees it."""
    if (not orders and not state.folded.orders) or policy.model is None:
        return None
    checks = policy.thresholds.get(metric.name)
    if checks is None:
        return model_metrics.next_midnight(t)
    return model_metrics.next_change(policy.model, metric, checks, state, orders, t,
                                     values[metric.name])
