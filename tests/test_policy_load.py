"""Policy loading (design section 4): shipped policies load; bad ones fail naming line and field."""

from __future__ import annotations

import json
import os
import threading
from contextlib import suppress
from pathlib import Path

import pytest

from models.errors import PolicyError
from rules.compiled import CompiledPolicy
from rules.conditions import MAX_CONDITION_LENGTH, MAX_CONDITION_NESTING
from rules.policy_file import MAX_POLICY_DEPTH, MAX_POLICY_SIZE, MAX_POLICY_VALUES, parse_policy
from streams.policies import builtin_policies, load_policy


@pytest.mark.parametrize("path", builtin_policies(), ids=lambda p: p.stem)
def test_shipped_policy_loads(path: Path) -> None:
    compiled = load_policy(path)
    assert isinstance(compiled, CompiledPolicy)
    assert compiled.name == path.stem
    assert compiled.tier_ids and compiled.tier.conditions


@pytest.mark.parametrize("path", builtin_policies(), ids=lambda p: p.stem)
def test_shipped_policy_loads_by_name(path: Path) -> None:
    assert load_policy(path.stem).policy == load_policy(path).policy


def test_default_policy_is_what_the_design_describes() -> None:
    compiled = load_policy("default")
    assert compiled.tier_ids == ("A", "B", "C", "D")
    assert compiled.windows == ("30d", "90d", "365d")
    assert (compiled.tier.grace, compiled.tier.max_steps, compiled.tier.warn_before) == (
        14 * 86_400_000_000, 1, 7 * 86_400_000_000)
    assert [rule for rule, _ in compiled.churn_conditions] == ["overdue", "key_account_silent"]
    assert compiled.time_metrics == ("days_since_first_order", "days_since_last_order")
    assert compiled.axis_names == ("lifecycle",)
    assert compiled.axes[0].ids == ("new", "reactivated", "active", "at_risk", "lapsed",
                                    "prospect")


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



# -- hostile policy files: refused fast, naming file and line, before they cost memory or time --

def billion_laughs(levels: int = 9) -> str:
    """A few hundred bytes whose aliases expand to 9**levels values (`a4` is line 7)."""
    lines = ['name: t', 'version: "1"', "a0: &a0 [" + ", ".join(['"lol"'] * 9) + "]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels + 1)]
    return "\n".join([*lines, "tiers: [{id: A}]", ""])


def test_billion_laughs_is_refused_at_the_alias_that_passes_the_bound() -> None:
    # 5 levels (59,049 values) fail as 9 would, and without the bound would still fit in memory;
    # the full 9 levels run in a memory-capped process: tests/test_hostile_policy.py
    with pytest.raises(PolicyError) as caught:
        parse_policy(billion_laughs(levels=5), "laughs.yaml")
    assert (caught.value.file, caught.value.line) == ("laughs.yaml", 7)
    assert caught.value.message == (
        f"the policy has more than {MAX_POLICY_VALUES:,} YAML values, an alias counting as the "
        "values it repeats (alias *a3 repeats 7,381); a policy needs a few hundred")


def test_aliases_within_the_bound_are_allowed() -> None:
    text = GOOD.replace("when: orders_365d >= 1", "when: &some orders_365d >= 1").replace(
        "when: days_since_last_order > 90.0", "when: *some")
    compiled = parse_policy(text, "aliases.yaml")
    assert compiled.churn_conditions[0][1].source == "orders_365d >= 1"
    with pytest.raises(PolicyError) as caught:  # 7,381 values pass the bound: the schema decides
        parse_policy(billion_laughs(levels=3))
    assert str(caught.value) == "<policy>:3: a0: Extra inputs are not permitted"


def test_aliases_repeating_long_text_are_bounded_by_characters() -> None:
    text = GOOD + "description: &long " + "x" * 100_000 + "\nlabels: [" + \
        ", ".join(["*long"] * 20) + "]\n"
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, "long.yaml")
    assert caught.value.line == 16  # the labels, where the 11th alias passes the bound
    assert f"more than {MAX_POLICY_SIZE:,} characters of values" in caught.value.message
    assert "alias *long repeats 100,000" in caught.value.message


def test_recursive_alias_is_refused() -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy('name: t\nversion: "1"\nx: &loop [1, *loop]\ntiers: [{id: A}]\n', "r.yaml")
    assert caught.value.line == 3
    assert caught.value.message == \
        "alias *loop is inside the value it refers to (a recursive structure)"


@pytest.mark.parametrize("nested", [
    "x: " + "[" * 5000 + "]" * 5000 + "\n",
    "x: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n",
    "".join(" " * i + "a:\n" for i in range(60)),
], ids=["flow lists", "flow mappings", "block mappings"])
def test_deeply_nested_yaml_is_refused_not_a_recursion_error(nested: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy('name: t\nversion: "1"\n' + nested, "deep.yaml")
    assert caught.value.line in (3, 3 + MAX_POLICY_DEPTH - 1)
    assert caught.value.message == f"YAML nested more than {MAX_POLICY_DEPTH} levels deep"


def test_policy_with_too_many_values_is_refused() -> None:
    text = GOOD.replace("windows: [30d, 365d]", "windows: [" + ", ".join(["1d"] * 10_000) + "]")
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, "many.yaml")
    assert caught.value.line == 3 and "more than 10,000 YAML values" in caught.value.message


def test_policy_text_over_the_size_limit_is_refused_before_parsing() -> None:
    text = GOOD + "#" * MAX_POLICY_SIZE
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, "big.yaml")
    assert str(caught.value) == (f"big.yaml: the policy is {len(text):,} characters, more than "
                                 f"the {MAX_POLICY_SIZE:,} allowed")
    assert parse_policy(GOOD + "#" * (MAX_POLICY_SIZE - len(GOOD))).tier_ids  # at the limit


def test_policy_file_over_the_size_limit_is_refused_before_reading(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    with big.open("wb") as sparse:  # 64 MiB on paper, no disk used
        sparse.truncate(64 << 20)
    with pytest.raises(PolicyError) as caught:
        load_policy(big)
    assert str(caught.value) == (f"{big}: the policy file is {64 << 20:,} bytes, more than the "
                                 f"{MAX_POLICY_SIZE:,} allowed (1 MiB)")


def test_a_pipe_with_no_size_is_read_no_further_than_the_limit(tmp_path: Path) -> None:
    fifo = tmp_path / "policy.yaml"
    os.mkfifo(fifo)

    def write() -> None:  # 4 MiB, of which the loader reads 1 MiB and a byte
        with suppress(BrokenPipeError), fifo.open("wb") as pipe:
            for _ in range(4):
                pipe.write(b"#" * MAX_POLICY_SIZE)

    threading.Thread(target=write, daemon=True).start()
    with pytest.raises(PolicyError) as caught:
        load_policy(fifo)
    assert caught.value.message == \
        f"the policy file is more than the {MAX_POLICY_SIZE:,} bytes allowed (1 MiB)"


def test_policy_file_that_is_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    raw = GOOD.replace("id: B", "id: B\n    label: caf\xe9").encode("latin-1")
    path.write_bytes(raw)
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    at = raw.index(b"\xe9")
    assert (caught.value.line, caught.value.message) == (8, f"not UTF-8: byte {at} is invalid")


# -- CEL conditions: a nesting limit said as such, and a length limit so nothing hangs or crashes

def with_condition(condition: str) -> str:
    """GOOD with tier B's condition replaced (double-quoted: `: `, `!` and `'` stay text)."""
    return GOOD.replace("orders_365d >= 1", json.dumps(condition), 1)


def condition_error(condition: str) -> PolicyError:
    with pytest.raises(PolicyError) as caught:
        parse_policy(with_condition(condition), "cel.yaml")
    assert (caught.value.file, caught.value.line, field_of(caught.value)) == \
        ("cel.yaml", 8, "tiers.1.when")
    return caught.value


def nested_condition(depth: int) -> str:
    return "(" * depth + "orders_365d >= 1" + ")" * depth


def test_condition_at_the_nesting_limit_loads() -> None:
    text = with_condition(nested_condition(MAX_CONDITION_NESTING))
    assert parse_policy(text).tier.conditions[1].holds({"orders_365d": 1})


@pytest.mark.parametrize(("condition", "depth", "column"), [
    (nested_condition(5000), 51, 51),
    (nested_condition(MAX_CONDITION_NESTING + 1), 51, 51),
    ("orders_365d >= 1 && [" + "[" * 60 + "]" * 60 + "] != []", 51, 71),
    ("orders_365d >= " + "-" * 60 + "1", 51, 66),
    ("!" * 60 + "(orders_365d >= 1)", 51, 51),
    ("orders_365d >= 1 ? true : " * 60 + "false", 51, 50 * 26 + 18),  # the 51st `?`
], ids=["5000 parentheses", "51 parentheses", "brackets", "unary minus", "negations",
        "conditionals"])
def test_condition_nested_past_the_limit_says_so(condition: str, depth: int,
                                                  column: int) -> None:
    assert condition_error(condition).message == (
        f"the condition is nested {depth} levels deep at column {column}; the nesting limit is "
        f"{MAX_CONDITION_NESTING} (each parenthesis, bracket, brace, unary - or ! and ?: is a "
        "level)")


def test_parentheses_inside_strings_are_not_nesting() -> None:
    condition = "orders_365d >= 1 || tier == '" + "(" * 200 + "'"
    assert parse_policy(with_condition(condition)).tier.conditions


def test_condition_over_the_length_limit_is_refused() -> None:
    condition = " && ".join(["orders_365d >= 1"] * 20_000)
    assert condition_error(condition).message == (
        f"the condition is {len(condition):,} characters, more than the "
        f"{MAX_CONDITION_LENGTH:,} allowed")


@pytest.mark.parametrize("condition", [
    "orders_365d" + " + 1" * 300 + " >= 1",                    # Python cannot nest 300 deep
    "orders_365d" + "+1" * ((MAX_CONDITION_LENGTH - 16) // 2) + " >= 1",  # the longest chain
    "days_since_last_order" + " + 1.0" * 300 + " > 1.0 && orders_365d >= 1",
], ids=["300-term sum", "chain as long as allowed", "300-term sum of a time metric"])
def test_long_flat_conditions_load_and_evaluate_like_cel(condition: str) -> None:
    assert len(condition) <= MAX_CONDITION_LENGTH
    compiled = parse_policy(with_condition(condition))
    tier = compiled.tier.conditions[1]
    values = {"orders_365d": 1, "days_since_last_order": 2.0}
    assert tier.holds(values) == tier.holds_in_cel(values) is True
