"""Policy loading (design section 4): shipped policies load; bad ones fail naming line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.errors import PolicyError
from rules.compiled import CompiledPolicy
from rules.policy_file import parse_policy
from streams.policies import builtin_policies, load_policy


@pytest.mark.parametrize("path", builtin_policies(), ids=lambda p: p.stem)
def test_shipped_policy_loads(path: Path) -> None:
    compiled = load_policy(path)
    assert isinstance(compiled, CompiledPolicy)
    assert compiled.name == path.stem
    assert compiled.tier_ids and compiled.tier_conditions


@pytest.mark.parametrize("path", builtin_policies(), ids=lambda p: p.stem)
def test_shipped_policy_loads_by_name(path: Path) -> None:
    assert load_policy(path.stem).policy == load_policy(path).policy


def test_default_policy_is_what_the_design_describes() -> None:
    compiled = load_policy("default")
    assert compiled.tier_ids == ("A", "B", "C", "D")
    assert compiled.windows == ("30d", "90d", "365d")
    assert (compiled.grace, compiled.max_steps, compiled.warn_before) == (
        14 * 86_400_000_000, 1, 7 * 86_400_000_000)
    assert [rule for rule, _ in compiled.churn_conditions] == ["overdue", "key_account_silent"]
    assert compiled.time_metrics == ("days_since_last_order",)


def test_missing_file_is_a_policy_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(PolicyError) as caught:
        load_policy(tmp_path / "nope.yaml")
    assert caught.value.file == str(tmp_path / "nope.yaml")


def test_error_message_names_file_line_and_field() -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(GOOD.replace("orders_365d >= 1", "ordrs_365d >= 1"), "mine.yaml")
    assert str(caught.value).startswith("mine.yaml:8: tiers")


GOOD = """\
name: t
version: "1"
windows: [30d, 365d]
tiers:
  - id: A
    when: revenue_365d >= 1000.0 && orders_30d >= 2
  - id: B
    when: orders_365d >= 1
  - id: C
downgrade:
  grace: 14d
churn:
  - id: quiet
    when: days_since_last_order > 90.0
"""


def test_the_base_of_the_error_cases_loads() -> None:
    assert parse_policy(GOOD).tier_ids == ("A", "B", "C")


def field_of(error: PolicyError) -> str:
    """The error's field in one notation: `tiers[0].when` and `tiers.0.when` read tiers.0.when."""
    return (error.field or "").replace("[", ".").replace("]", "").lstrip(".")


# (case, old text in GOOD, new text, line, field, fragment of the message)
BROKEN = [
    ("unknown metric with hint", "orders_365d >= 1", "ordrs_365d >= 1", 8, "tiers.1.when",
     "unknown metric 'ordrs_365d'; did you mean 'orders_365d'?"),
    ("unknown metric without hint", "orders_365d >= 1", "zzz >= 1", 8, "tiers.1.when",
     "unknown metric 'zzz'"),
    ("unknown metric in a churn rule", "days_since_last_order > 90.0",
     "days_since_last_ordr > 90.0", 14, "churn.0.when", "did you mean 'days_since_last_order'?"),
    ("window not in windows", "orders_30d >= 2", "orders_90d >= 2", 6, "tiers.0.when",
     "uses window 90d, which is not in the policy's windows [30d, 365d]"),
    ("model-only metric p_alive", "orders_365d >= 1", "p_alive > 0.5", 8, "tiers.1.when",
     "needs a fitted model"),
    ("model-only metric clv", "orders_365d >= 1", "clv_365d > 100.0", 8, "tiers.1.when",
     "needs a fitted model"),
    ("percentile of an unknown metric", "orders_365d >= 1", "revnue_365d_pct > 0.8", 8,
     "tiers.1.when", "needs a numeric base metric: unknown metric 'revnue_365d'"),
    ("interaction kind on orders", "orders_365d >= 1", "orders_visit_30d >= 1", 8,
     "tiers.1.when", "unknown metric 'orders_visit_30d'"),
    ("CEL syntax error", "orders_365d >= 1", "orders_365d >=", 8, "tiers.1.when",
     "CEL syntax error"),
    ("CEL unbalanced parenthesis", "orders_365d >= 1", "(orders_365d >= 1", 8, "tiers.1.when",
     "CEL syntax error"),
    ("condition is a number", "orders_365d >= 1", "orders_365d + 1", 8, "tiers.1.when",
     "not true or false"),
    ("condition is a string", 'days_since_last_order > 90.0', "\"'quiet'\"", 14, "churn.0.when",
     "not true or false"),
    ("int mixed with double", "orders_365d >= 1", "orders_total / 2.0 > 1.0", 8,
     "tiers.1.when", "does not evaluate"),
    ("tier compared as a number", "orders_365d >= 1", "tier > 1", 8, "tiers.1.when",
     "does not evaluate"),
    ("bad duration", "grace: 14d", "grace: 14x", 11, "downgrade.grace", "'14x'"),
    ("bad window", "[30d, 365d]", "[30d, 1y]", 3, "windows.1", "'1y'"),
    ("unknown top-level field", "churn:", "colour: red\nchurn:", 12, "colour",
     "Extra inputs are not permitted"),
    ("unknown tier field", "  - id: B\n", "  - id: B\n    colour: red\n", 8, "tiers.1.colour",
     "Extra inputs are not permitted"),
    ("duplicate YAML key", "    when: orders_365d >= 1\n",
     "    when: orders_365d >= 1\n    when: orders_365d >= 2\n", 9, "tiers.1",
     "key 'when' appears twice"),
    ("version not a string", 'version: "1"', "version: 2026-11-01", 2, "version",
     "valid string"),
    ("max_steps below one", "grace: 14d", "grace: 14d\n  max_steps: 0", 12,
     "downgrade.max_steps", "greater than or equal to 1"),
    ("negative rate", "windows:", "rates: {USD: -1}\nwindows:", 3, "rates.USD", "greater than 0"),
    ("no tiers", "tiers:\n", "tierz:\n", 1, "tiers", "Field required"),
]


@pytest.mark.parametrize(("old", "new", "line", "field", "fragment"),
                         [case[1:] for case in BROKEN], ids=[case[0] for case in BROKEN])
def test_broken_policy_names_line_and_field(old: str, new: str, line: int, field: str,
                                            fragment: str) -> None:
    assert old in GOOD
    with pytest.raises(PolicyError) as caught:
        parse_policy(GOOD.replace(old, new, 1), "broken.yaml")
    error = caught.value
    assert (error.file, error.line, field_of(error)) == ("broken.yaml", line, field)
    assert fragment in error.message


def test_type_error_hidden_behind_short_circuit_fails_at_load() -> None:
    # `tier == "B" && <type error>` evaluates to false on a sample where tier is "A", so the type
    # error is only found at run time, when a B customer makes the engine raise.
    text = GOOD.replace("orders_365d >= 1", 'tier == "B" && orders_total / 2.0 > 1.0')
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, "broken.yaml")
    assert (caught.value.line, field_of(caught.value)) == (8, "tiers.1.when")


# Whole-policy rules (checked after every field is valid): the error must still point at the tier.
TIER_LIST_ERRORS = [
    ("last tier has a when", "  - id: C\n", "  - id: C\n    when: orders_total >= 0\n",
     {9, 10}, "tiers.2", "default tier"),
    ("non-last tier without when", "    when: orders_365d >= 1\n", "", {7}, "tiers.1",
     "needs a `when`"),
    ("duplicate tier id", "  - id: B\n", "  - id: A\n", {7}, "tiers.1",
     "A is listed more than once"),
]


@pytest.mark.parametrize(("old", "new", "lines", "field", "fragment"),
                         [case[1:] for case in TIER_LIST_ERRORS],
                         ids=[case[0] for case in TIER_LIST_ERRORS])
def test_tier_list_errors_point_at_the_tier(old: str, new: str, lines: set[int], field: str,
                                            fragment: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(GOOD.replace(old, new, 1), "broken.yaml")
    error = caught.value
    assert fragment in error.message
    assert error.line in lines
    assert field_of(error).startswith(field)


@pytest.mark.parametrize(("text", "line", "fragment"), [
    ("name: t\nversion: '1'\ntiers: [\n  - id: A\n", 4, "not valid YAML"),
    ("name: t\n  version: '1'\n", 2, "not valid YAML"),
    ("name: t\n---\nname: u\n", 2, "not valid YAML"),
    ("", None, "empty"),
    ("# only a comment\n", None, "empty"),
    ("just a string\n", 1, "valid dictionary"),
], ids=["unclosed flow sequence", "bad indentation", "two documents", "empty file",
        "only comments", "not a mapping"])
def test_unreadable_policy_files(text: str, line: int | None, fragment: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, "broken.yaml")
    assert (caught.value.file, caught.value.line) == ("broken.yaml", line)
    assert fragment in caught.value.message

