"""Model metrics in policies: values equal the lifetime-value functions on the fit's summary, the
wake-up midnight is exact, and a policy's `model:` fails at load naming file, line and field."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from models.errors import PolicyError
from models.instants import MICROS_PER_DAY
from models.state import CustomerState, Order
from rules import lifetime_value as lv
from rules import model_metrics
from rules.horizon import _OPERATORS
from rules.policy_file import parse_policy
from streams.policies import BUILTIN_DIR, load_policy

DAY = MICROS_PER_DAY
MODEL = load_policy("predictive").model
assert MODEL is not None


NEW = CustomerState(customer_id="c", created_at=0, clock=0)  # nothing folded


def order(day: int, amount: float, hour: int = 0) -> Order:
    return Order(f"o{day}-{hour}", day * DAY + hour * 3_600_000_000, amount, 0.0, False, ())


def test_values_are_the_fit_summary_in_weeks_of_distinct_days() -> None:
    orders = [order(0, 10.0), order(0, 5.0, hour=20), order(14, 30.0), order(28, 20.0)]
    metrics = [model_metrics.parse(n) for n in ("p_alive", "expected_orders_90d", "clv_365d")]
    values = model_metrics.compute(MODEL, metrics, NEW, orders, 70 * DAY + 5)
    x, t_x, T, spend = 2, 4.0, 10.0, 25.0  # same-day orders are one purchase day
    assert values["p_alive"] == pytest.approx(float(lv.p_alive(MODEL.bgnbd, x, t_x, T)))
    assert values["expected_orders_90d"] == pytest.approx(
        float(lv.expected_purchases(MODEL.bgnbd, 90 / 7, x, t_x, T)))
    assert values["clv_365d"] == pytest.approx(
        float(lv.clv(MODEL.bgnbd, MODEL.gamma_gamma, 365 / 7, x, t_x, T, spend)))
    assert model_metrics.compute(MODEL, metrics, NEW, [], 5) == {m.name: 0.0 for m in metrics}


@pytest.mark.parametrize(("op", "threshold"), [("<", 0.3), (">=", 0.5), ("<", 0.05)])
def test_next_change_is_the_midnight_the_comparison_flips(op: str, threshold: float) -> None:
    orders = [order(d, 20.0) for d in range(0, 70, 7)]
    metric = model_metrics.parse("p_alive")
    checks = [(_OPERATORS[op], threshold)]
    t = 80 * DAY + 123

    def holds(at: int) -> bool:
        return _OPERATORS[op](model_metrics.compute(MODEL, [metric], NEW, orders, at)["p_alive"],
                              threshold)

    now = model_metrics.compute(MODEL, [metric], NEW, orders, t)["p_alive"]
    due = model_metrics.next_change(MODEL, metric, checks, NEW, orders, t, now)
    assert due is not None and due % DAY == 0 and due > t
    assert holds(due) != holds(t) and holds(due - 1) == holds(t)


def test_policy_with_model_loads_it_relative_to_the_policy_file(tmp_path: Path) -> None:
    shutil.copy(BUILTIN_DIR / "predictive.yaml", tmp_path / "mine.yaml")
    (tmp_path / "models").mkdir()
    shutil.copy(BUILTIN_DIR / "models" / "cdnow.yaml", tmp_path / "models" / "cdnow.yaml")
    assert load_policy(tmp_path / "mine.yaml").model == MODEL
    text = (BUILTIN_DIR / "predictive.yaml").read_text().replace("models/cdnow.yaml", "cdnow")
    (tmp_path / "named.yaml").write_text(text)
    assert load_policy(tmp_path / "named.yaml").model == MODEL  # a shipped model by name


def test_model_spends_are_converted_to_the_policy_currency(tmp_path: Path) -> None:
    text = (BUILTIN_DIR / "predictive.yaml").read_text()
    text = text.replace("currency: USD", "currency: EUR").replace("EUR: 1.08", "USD: 0.5")
    (tmp_path / "eur.yaml").write_text(text.replace("models/cdnow.yaml", "cdnow"))
    eur = load_policy(tmp_path / "eur.yaml").model
    assert eur is not None and eur.gamma_gamma.v == pytest.approx(MODEL.gamma_gamma.v * 0.5)


POLICY = """\
name: p
version: "1"
currency: USD
model: {model}
windows: [365d]
tiers:
  - id: A
    when: clv_365d >= 100.0
  - id: B
"""


def load_text(tmp_path: Path, text: str) -> None:
    (tmp_path / "p.yaml").write_text(text)
    load_policy(tmp_path / "p.yaml")


@pytest.mark.parametrize(("model_text", "fragment"), [
    (None, "cannot read the model file"),
    ("kind: something-else\n", "not a tierstream model file"),
    ("kind: [unclosed\n", "not valid YAML"),
    ("kind: tierstream/lifetime-value-model\ncurrency: USD\nbgnbd: {r: 1}\n", "missing"),
], ids=["missing", "not a model", "not YAML", "incomplete"])
def test_unusable_model_file_fails_at_load_naming_the_model_field(
        tmp_path: Path, model_text: str | None, fragment: str) -> None:
    if model_text is not None:
        (tmp_path / "m.yaml").write_text(model_text)
    with pytest.raises(PolicyError) as caught:
        load_text(tmp_path, POLICY.format(model="m.yaml"))
    error = caught.value
    assert (error.file, error.line, error.field) == (str(tmp_path / "p.yaml"), 4, "model")
    assert fragment in error.message


def test_model_in_a_currency_without_a_rate_fails_at_load(tmp_path: Path) -> None:
    with pytest.raises(PolicyError) as caught:
        load_text(tmp_path, POLICY.format(model="cdnow").replace("USD", "CNY"))
    assert (caught.value.line, caught.value.field) == (4, "model")
    assert "add a rate for it" in caught.value.message


def test_model_metric_window_must_be_listed(tmp_path: Path) -> None:
    with pytest.raises(PolicyError) as caught:
        load_text(tmp_path, POLICY.format(model="cdnow").replace("clv_365d", "clv_90d"))
    assert (caught.value.line, caught.value.field) == (8, "tiers[0].when")
    assert "not in the policy's windows" in caught.value.message


def test_policy_text_with_a_model_needs_a_reader() -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(POLICY.format(model="cdnow"), "p.yaml")
    assert (caught.value.line, caught.value.field) == (4, "model")
