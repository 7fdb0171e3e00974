"""`tierstream model fit`: fit BG/NBD and Gamma-Gamma on order history and write the model file."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from pathlib import Path
from typing import Any

from rich.progress import Progress
from rich.table import Table

from models.errors import InvalidEventError, ModelFitError
from models.events import Event, OrderCancelled, OrderCompleted, OrderRefunded
from models.instants import from_micros
from rules import lifetime_value as lv
from streams import model_file
from streams.cli import replay_job
from streams.cli.files import CsvLayout


def purchases(events: Iterable[Event]) -> tuple[list[tuple[str, date, float]], set[str]]:
    """(customer, UTC day, net amount) of each completed order that was not cancelled."""
    orders: dict[tuple[str, str], list[Any]] = {}
    cancelled: set[tuple[str, str]] = set()
    refunds: dict[str, OrderRefunded] = {}
    for event in events:
        if isinstance(event, OrderCompleted):
            orders[(event.customer_id, event.order_id)] = [
                event.customer_id, from_micros(event.at).date(), event.amount,
                event.currency]
        elif isinstance(event, OrderCancelled):
            cancelled.add((event.customer_id, event.order_id))
        elif isinstance(event, OrderRefunded):
            refunds[event.event_id] = event  # a redelivered refund counts once, as in the engine
    for refund in refunds.values():
        order = orders.get((refund.customer_id, refund.order_id))
        if order is None:
            continue
        if refund.amount is None:  # a full refund
            order[2] = 0.0
            continue
        if refund.currency != order[3]:
            raise ValueError(f"refund {refund.event_id} is in {refund.currency}, its order "
                             f"{refund.order_id} in {order[3]}: one currency per model fit")
        order[2] = max(order[2] - refund.amount, 0.0)
    kept = [o for key, o in orders.items() if key not in cancelled]
    return [(c, d, a) for c, d, a, _ in kept], {o[3] for o in kept}


def fit(paths: list[Path], file_format: str, csv_layout: CsvLayout | None,
        calibration_end: date | None, progress: Progress) -> dict[str, Any]:
    """Read the files, fit both models and return the model document."""
    records = replay_job.read_inputs(paths, file_format, csv_layout, progress)
    events: list[Event] = []
    rejected = 0
    for _, record in records:
        if isinstance(record, InvalidEventError):
            rejected += 1
        else:
            events.append(record)
    bought, currencies = purchases(events)
    if not bought:
        raise ModelFitError(f"no completed orders in {', '.join(map(str, paths))}")
    if len(currencies) > 1:
        raise ModelFitError(f"orders in several currencies ({', '.join(sorted(currencies))}); "
                            "fit one currency at a time")
    end = calibration_end or max(d for _, d, _ in bought)
    summaries = lv.summarize(bought, end)
    x, t_x, T, spend = lv.arrays(summaries)
    bgnbd, gg = lv.fit_bgnbd(x, t_x, T), lv.fit_gamma_gamma(x, spend)
    first = min(d for _, d, _ in bought)
    return {
        "kind": model_file.KIND,
        "time_unit": "week",
        "currency": currencies.pop(),
        "calibration": {"start": first.isoformat(), "end": end.isoformat()},
        "source": {"files": [str(p) for p in paths], "orders": len(bought),
                   "orders_in_calibration": sum(1 for _, d, _ in bought if d <= end),
                   "rejected_lines": rejected},
        "bgnbd": _section(bgnbd),
        "gamma_gamma": _section(gg),
    }


def _section(result: lv.Fit) -> dict[str, Any]:
    params = {name: round(float(value), 6) for name, value in vars(result.params).items()}
    section = {**params, "customers": result.customers,
               "log_likelihood": round(result.log_likelihood, 4)}
    if result.excluded:
        section["excluded"] = result.excluded
    return section



def table(model: dict[str, Any], path: Path) -> Table:
    cal = model["calibration"]
    out = Table(title=f"{path}: calibration {cal['start']} .. {cal['end']}, "
                      f"time unit {model['time_unit']}, spend in {model['currency']}")
    for column in ("model", "parameter", "value"):
        out.add_column(column)
    for name, key, params in (("BG/NBD", "bgnbd", ("r", "alpha", "a", "b")),
                              ("Gamma-Gamma", "gamma_gamma", ("p", "q", "v"))):
        section = model[key]
        for i, param in enumerate(params):
            out.add_row(name if i == 0 else "", param, f"{section[param]:.4f}")
        fitted = f"{section['customers']} customers, log-likelihood {section['log_likelihood']:.2f}"
        if section.get("excluded"):
            fitted += f", {section['excluded']} excluded (no repeat purchase or no spend)"
        out.add_row("", "fit", fitted, end_section=True)
    return out
