"""A validated policy with its CEL conditions compiled once and its metric needs worked out."""

from __future__ import annotations

import difflib
from collections import Counter
from collections.abc import Callable
from typing import Any

import cel

from models.errors import PolicyError
from models.instants import parse_duration
from models.outputs import PolicyName, sources_of
from models.policy import Downgrade, Policy, TierRule
from rules import followup, horizon, metrics, relative
from rules.comparisons import comparisons, tokens
from rules.conditions import Condition, native_or_none
from rules.lifetime_value import GammaGamma, Model
from rules.model_metrics import ModelMetric
from rules.native import compile_first
from rules.relative import Population, Relative

LineOf = Callable[[tuple[str | int, ...]], int | None]


def field_path(location: tuple[str | int, ...]) -> str:
    """`("tiers", 0, "when")` -> `tiers[0].when`, as error messages name a policy field."""
    text = ""
    for part in location:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text


class CompiledPolicy:
    """Everything the engine needs from a policy, computed once at load."""

    def __init__(self, policy: Policy, line_of: LineOf = lambda _: None,
                 file: str = "<policy>", model: Model | None = None) -> None:
        self.policy, self.file = policy, file
        self.name, self.version = policy.name, policy.version
        self.reference = PolicyName(policy.name, policy.version)
        self.sources = sources_of(policy.name)  # of its customers' outputs
        self.tier_ids = policy.tier_ids
        self.windows = tuple(policy.windows)
        self.rates = {policy.currency: 1.0, **policy.rates}
        self.followups = followup.plans(policy.followup)  # tier -> its follow-up plan
        self.contacts = frozenset(policy.followup.contacts if policy.followup else ())
        self.model = self._in_policy_currency(model, line_of)
        ladders: list[tuple[str, tuple[str, ...], list[TierRule], Downgrade]] = [
            ("tier", ("tiers",), policy.tiers, policy.downgrade)]
        ladders += [(name, ("axes", name, "classes"), axis.classes, axis.downgrade)
                    for name, axis in policy.axes.items()]
        where = [((*field, i, "when"), rule.when) for _, field, rules, _ in ladders
                 for i, rule in enumerate(rules) if rule.when]
        where += [(("churn", i, "when"), c.when) for i, c in enumerate(policy.churn)]
        compiled = {loc: self._compile(source, loc, line_of) for loc, source in where}
        self.churn_conditions: tuple[tuple[str, Condition], ...] = tuple(
            (c.id, compiled[("churn", i, "when")]) for i, c in enumerate(policy.churn))
        names = sorted({v for c in compiled.values() for v in c.variables})
        self.fixed, self.windowed, self.modelled, self.relative = self._classify(
            names, compiled, line_of)
        self.metric_names = tuple(names)
        self.relative_bases = tuple(sorted({r.base for r in self.relative}))
        self.time_bases = tuple(b for b in self.relative_bases if metrics.is_time(b))
        # a refresh of the population snapshot at every multiple of this since the epoch
        self.refresh = parse_duration(policy.relative.refresh) if self.relative else None
        self._bases = (tuple(n for n in self.fixed if n in self.relative_bases),
                       tuple(m for m in self.windowed if m.name in self.relative_bases),
                       tuple(m for m in self.modelled if m.name in self.relative_bases))
        self.time_metrics = tuple(n for n in names if metrics.is_time(n))
        # the interaction kinds whose latest instant a state keeps (days_since_last_<kind>)
        self.latest_kinds = frozenset(kind for n in (*names, *self.relative_bases)
                                      if (kind := metrics.last_kind(n)) is not None)
        self.largest_window = max((parse_duration(w) for w in self.windows), default=0)
        self.customer_items = policy.limits.customer_items
        # orders placed this long before a customer's clock are folded (rules/history.py)
        self.exact_history = self.largest_window + \
            parse_duration(policy.limits.redelivery_horizon)
        self.timed_conditions = tuple(c for c in compiled.values() if c.timed)
        uses = Counter(t.text for c in compiled.values() for t in tokens(c.source)
                       if t.kind == "ident")
        for placed in self.relative:  # a base also used relatively wakes at every change
            uses[placed.base] += uses[placed.name]
        found = [x for c in compiled.values() for x in comparisons(c.source)]
        self.thresholds = horizon.thresholds(
            found, {m.name: uses[m.name] for m in (*self.windowed, *self.modelled,
                                                   *self.relative)})
        self.floors = horizon.floors(self.windowed, self.thresholds)
        # conditions change with time only as windows forget (rules/horizon.py)
        self.windows_alone = not (self.time_metrics or self.modelled or self.relative)
        self._type_check(compiled, line_of)
        self.tier, *axes = (Ladder(name, rules, downgrade, tuple(
            compiled[(*field, i, "when")] for i, rule in enumerate(rules) if rule.when))
            for name, field, rules, downgrade in ladders)
        self.axes: tuple[Ladder, ...] = tuple(axes)   # the classifications besides the tier
        self.axis_names = tuple(policy.axes)
        # the value tier's ladder, as the engine reads it most
        self.eligible, self.reasons = self.tier.eligible, self.tier.reasons
        self.tier_variables = self.tier.variables
        self.tiers_read_tier = any(v in ("tier", "days_in_tier") for v in self.tier_variables)
        # the first churn rule that holds, in one call, as Ladder.eligible finds a rung
        churn = [c for _, c in self.churn_conditions]
        self._first_churn = native_or_none(compile_first, [c.source for c in churn]) \
            if all(c.native is not None for c in churn) else None

    def _compile(self, source: str, location: tuple, line_of: LineOf) -> Condition:
        field = field_path(location)
        try:
            return Condition(source, field)
        except (ValueError, SyntaxError) as error:
            message = str(error).replace("Failed to parse expression", "CEL syntax error in")
            raise PolicyError(message, file=self.file, line=line_of(location),
                              field=field) from None

    def _in_policy_currency(self, model: Model | None, line_of: LineOf) -> Model | None:
        """The model with its spend scale `v` in the policy currency, so clv_<w> is too."""
        if model is None:
            return None
        if model.currency not in self.rates:
            raise PolicyError(f"the model's spends are in {model.currency}, which is neither the "
                              f"policy currency ({self.policy.currency}) nor in `rates`; add a "
                              "rate for it", file=self.file, line=line_of(("model",)),
                              field="model")
        gg, rate = model.gamma_gamma, self.rates[model.currency]
        return Model(model.bgnbd, GammaGamma(gg.p, gg.q, gg.v * rate), self.policy.currency,
                     model.calibration)

    def _classify(self, names: list[str], compiled: dict, line_of: LineOf) -> tuple:
        fixed: list[str] = []
        windowed: list[metrics.Windowed] = []
        modelled: list[ModelMetric] = []
        placed = [kind for name in names
                  if isinstance(kind := self._kind(name, compiled, line_of), Relative)]
        # bases of relative metrics are computed too, even where no condition names them
        needed = sorted({*names, *(r.base for r in placed)} - {r.name for r in placed})
        for name in needed:
            kind = self._kind(name, compiled, line_of)
            if kind is None:
                fixed.append(name)
            elif isinstance(kind, ModelMetric):
                modelled.append(kind)
            elif isinstance(kind, metrics.Windowed):
                windowed.append(kind)
        return tuple(fixed), tuple(windowed), tuple(modelled), tuple(placed)

    def _kind(self, name: str, compiled: dict, line_of: LineOf) -> Any:
        try:
            return metrics.classify(name, self.windows, has_model=self.model is not None,
                                    contacts=self.contacts)
        except ValueError as error:
            location = next(loc for loc, c in compiled.items() if name in c.variables)
            hint = difflib.get_close_matches(name, self.known_metrics(), n=1)
            message = f"{error}{f'; did you mean {hint[0]!r}?' if hint else ''}"
            raise PolicyError(message, file=self.file, line=line_of(location),
                              field=field_path(location)) from None

    def _type_check(self, compiled: dict, line_of: LineOf) -> None:
        """Evaluate every condition, and every comparison in it on its own (so a type error
        behind a short-circuiting `&&` is found too), on typed sample values."""
        sample = metrics.sample_values(self.fixed, self.windowed, self.modelled, self.relative)
        anchors = {name: 0 for name in self.time_metrics}  # every time metric growing
        for location, condition in compiled.items():
            try:
                if condition.native is not None and \
                        condition.native(sample) != condition.holds_in_cel(sample):
                    condition.native = None  # never expected: CEL decides
                condition.holds(sample)
                condition.next_flip(sample, anchors, 0)
                for part in comparisons(condition.source):
                    program = cel.compile(f"({part.left}) {part.operator} ({part.right})")
                    if set(program.variables()) <= sample.keys():
                        program.execute({v: sample[v] for v in program.variables()})
            except Exception as error:
                raise PolicyError(f"`{condition.source}` does not evaluate: "
                                  f"{getattr(error, 'message', error)}", file=self.file,
                                  line=line_of(location),
                                  field=field_path(location)) from None

    def known_metrics(self) -> list[str]:
        windowed = [f"{kind}_{w}" for kind in metrics.WINDOWED for w in self.windows]
        modelled = ["p_alive", *(f"{kind}_{w}" for kind in ("expected_orders", "clv")
                                 for w in self.windows)]
        return [*metrics.FIXED, *windowed, *modelled]

    def values(self, state: Any, t: int, population: Population | None = None,
               orders: list | None = None, windows: dict[str, metrics.Window] | None = None
               ) -> dict[str, Any]:
        """Every metric the policy uses at t; relative ones placed in `population`. `orders`:
        the state's metrics.counted_orders at t, when the caller has them already; `windows`
        receives each windowed metric's Window."""
        values = metrics.compute(state, t, self.fixed, self.windowed, self.modelled, self.model,
                                 orders, windows)
        if self.relative:
            values.update(relative.compute(self.relative, values, population))
        return values

    def base_values(self, state: Any, t: int) -> dict[str, Any]:
        """The values at t of the metrics the relative ones place, for a population snapshot."""
        return metrics.compute(state, t, *self._bases, self.model)

    def churn_rule(self, values: dict[str, Any]) -> str | None:
        """The id of the first churn rule whose condition holds, if any."""
        if self._first_churn is not None:
            first = self._first_churn(values)
            return self.churn_conditions[first][0] if first < len(self.churn_conditions) \
                else None
        return next((rule for rule, c in self.churn_conditions if c.holds(values)), None)


class Ladder:
    """One classification, compiled: the value tier (`tier`) or an axis. Its rungs (tiers,
    classes) best first, the last the default, and its downgrade hysteresis."""

    def __init__(self, axis: str, rules: list[TierRule], downgrade: Downgrade,
                 conditions: tuple[Condition, ...]) -> None:
        self.axis = axis
        self.ids = tuple(rule.id for rule in rules)
        noun = "tier" if axis == "tier" else "class"
        # why a customer is eligible for each rung, as the outputs' `reason` says
        self.reasons = tuple(f"{r.id} is the default {noun}: no condition above it holds"
                             if r.when is None else f"qualifies for {r.id}: {r.when}"
                             for r in rules)
        self.grace_text = downgrade.grace
        self.grace = parse_duration(downgrade.grace)
        self.warn_before = parse_duration(downgrade.warn_before)
        self.warn_text = downgrade.warn_before
        self.max_steps = downgrade.max_steps
        self.conditions = conditions
        self.variables = tuple(sorted({v for c in conditions for v in c.variables}))
        # the first rung that holds, in one call (each condition natively compiled and checked
        # against CEL by CompiledPolicy._type_check), else condition by condition
        self._first = native_or_none(compile_first, [c.source for c in conditions]) \
            if all(c.native is not None for c in conditions) else None

    def eligible(self, values: dict[str, Any]) -> int:
        """Index of the first rung whose condition holds (the last is the default)."""
        if self._first is not None:
            return self._first(values)
        for index, condition in enumerate(self.conditions):
            if condition.holds(values):
                return index
        return len(self.conditions)
