"""`tierstream policy validate|explain`: check a policy file and say what it does in plain words."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from rules import metrics, model_metrics, relative
from rules.compiled import CompiledPolicy, Ladder


def summary(policy: CompiledPolicy) -> dict[str, Any]:
    """What `policy validate --json` says of a valid policy."""
    return {"policy": policy.name, "version": policy.version, "tiers": list(policy.tier_ids),
            "axes": {a.axis: list(a.ids) for a in policy.axes},
            "churn_rules": len(policy.churn_conditions), "metrics": sorted(policy.metric_names)}


def describe_validated(policy: CompiledPolicy) -> str:
    return (f"ok  {policy.file}: policy {policy.name} {policy.version}, "
            f"{len(policy.tier_ids)} tiers ({' > '.join(policy.tier_ids)}), "
            + "".join(f"axis {a.axis} ({' > '.join(a.ids)}), " for a in policy.axes)
            + f"{len(policy.churn_conditions)} churn rules, {len(policy.metric_names)} metrics")


def explain(policy: CompiledPolicy, console: Console) -> None:
    spec = policy.policy
    console.print(f"[bold]Policy {spec.name}[/] version {spec.version}  ({policy.file})")
    if spec.description:
        console.print(spec.description)
    rates = ", ".join(f"1 {c} = {r} {spec.currency}" for c, r in spec.rates.items())
    console.print(f"Amounts in {spec.currency}"
                  + (f"; rates: {rates}" if rates else "; other currencies are rejected")
                  + f". Windows: {', '.join(spec.windows) or 'none'}.\n")
    if policy.model is not None:
        console.print(_model(policy) + "\n")
    if policy.relative:
        console.print(_relative(policy) + "\n")
    tiers = Table(title="Tiers, best first: the first whose condition holds is eligible")
    for column in ("tier", "label", "condition"):
        tiers.add_column(column)
    for tier in spec.tiers:
        tiers.add_row(tier.id, tier.label or "", tier.when or "(default: everyone else)")
    console.print(tiers)
    console.print(_hysteresis(policy.tier, "tier") + "\n")
    _axes(policy, console)
    if spec.churn:
        churn = Table(title="Churn warnings: one per episode, a recovery event when none holds")
        for column in ("rule", "label", "condition"):
            churn.add_column(column)
        for rule in spec.churn:
            churn.add_row(rule.id, rule.label or "", rule.when)
        console.print(churn)
    if spec.followup is not None:
        console.print(_plans(policy))
    used = Table(title="Metrics used")
    used.add_column("metric")
    used.add_column("meaning")
    for name in policy.metric_names:
        used.add_row(name, _meaning(name, policy))
    console.print(used)


def _axes(policy: CompiledPolicy, console: Console) -> None:
    for ladder, (name, axis) in zip(policy.axes, policy.policy.axes.items(), strict=True):
        classes = Table(title=f"Axis {name}{f' ({axis.label})' if axis.label else ''}: classes "
                              "tried first to last, events axis.* with data.axis " + repr(name))
        for column in ("class", "label", "condition"):
            classes.add_column(column)
        for rule in axis.classes:
            classes.add_row(rule.id, rule.label or "", rule.when or "(default: everyone else)")
        console.print(classes)
        console.print(_hysteresis(ladder, "class") + "\n")


def _plans(policy: CompiledPolicy) -> Table:
    spec = policy.policy
    assert spec.followup is not None
    plans = Table(title="Follow-up plans (定期回访): followup.due once a tier's cadence lapses "
                        f"with no contact ({', '.join(spec.followup.contacts)})")
    for column in ("tier", "contact at least every", "channel", "overdue after"):
        plans.add_column(column)
    for tier in spec.tiers:
        plan = spec.followup.tiers.get(tier.id)
        plans.add_row(tier.id, *(("no plan", "", "") if plan is None else
                                 (plan.every, plan.channel, plan.escalate_after or "never")))
    return plans


def _hysteresis(ladder: Ladder, noun: str) -> str:
    steps = f"one {noun}" if ladder.max_steps == 1 else \
        f"at most {ladder.max_steps} {'classes' if noun == 'class' else 'tiers'}"
    kind = "tier" if ladder.axis == "tier" else "axis"
    text = "Upgrades happen at once. "
    if ladder.grace:
        text += (f"A customer who stops qualifying for its {noun} keeps it for a "
                 f"{ladder.grace_text} grace period and then moves down {steps} (never below "
                 f"the {noun} it qualifies for); qualifying again during the grace period "
                 "cancels the downgrade.")
    else:
        text += f"Downgrades happen at once, {steps} at a time."
    if ladder.warn_before and ladder.grace:
        text += f" A {kind}.downgrade_warning is sent {ladder.warn_text} before the downgrade."
    return text


def _model(policy: CompiledPolicy) -> str:
    model = policy.model
    assert model is not None
    bg, gg = model.bgnbd, model.gamma_gamma
    start, end = model.calibration
    return (f"Model {policy.policy.model}: BG/NBD r={bg.r:.4g} alpha={bg.alpha:.4g} a={bg.a:.4g} "
            f"b={bg.b:.4g}, Gamma-Gamma p={gg.p:.4g} q={gg.q:.4g} v={gg.v:.4g} {model.currency}, "
            f"fitted on {start} .. {end}. Model metrics are computed from each customer's "
            "purchase days (x repeat days, first to last, first to now, in weeks) and change by "
            "time alone at UTC midnights.")


def _relative(policy: CompiledPolicy) -> str:
    return (f"Relative metrics place each customer among all customers by a population snapshot "
            f"of {', '.join(policy.relative_bases)}, retaken every "
            f"{policy.policy.relative.refresh} (UTC-aligned) and held fixed in between; each "
            "refresh looks at every customer again. Before the first refresh a customer reads "
            "as last (_pct 0.0, _share_above 1.0).")


def _meaning(name: str, policy: CompiledPolicy) -> str:
    if name in metrics.FIXED:
        return metrics.FIXED[name]
    if (kind := metrics.last_kind(name)) is not None:
        return (f"days since the latest {kind!r} interaction, or since the customer was first "
                "seen with none")
    windowed = metrics.classify(name, policy.windows, contacts=policy.contacts)
    assert windowed is not None
    if isinstance(windowed, relative.Relative):
        base = _meaning(windowed.base, policy)
        return f"{relative.KINDS[windowed.kind]} {windowed.base} ({base}), in [0, 1]"
    if isinstance(windowed, model_metrics.ModelMetric):
        what = model_metrics.KINDS[windowed.kind]
        return what if windowed.window is None else f"{what} {windowed.window}"
    what = metrics.WINDOWED[windowed.kind]
    if windowed.touch:
        what = f"interactions of kind {windowed.touch!r} in the window"
    return f"{what}, window {windowed.window} (events in (t - {windowed.window}, t])"
