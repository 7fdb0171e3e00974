"""`tierstream policy diff`: the what-if matrix from history and from current states."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from models.events import parse_event
from rules.policy_file import parse_policy
from rules.replay import Replay
from streams.cli import policy_diff
from streams.cli.main import main
from streams.dev import simulate
from streams.policies import BUILTIN_DIR

DEFAULT_TEXT = (BUILTIN_DIR / "default.yaml").read_text(encoding="utf-8")
STRICT_A = "revenue_365d >= 50000.0 && orders_365d >= 12"


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("diff") / "history.jsonl"
    population = simulate.Population(customers=200, seed=3, start=datetime(2024, 1, 1, tzinfo=UTC),
                                     days=730)
    lines = [simulate.to_record(event).value for event in simulate.population_events(population)]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def stricter_text() -> str:
    text = DEFAULT_TEXT.replace("revenue_365d >= 20000.0 && orders_365d >= 6", STRICT_A)
    assert text != DEFAULT_TEXT
    return text.replace("name: default", "name: stricter")


def events_of(path: Path) -> list:
    return [parse_event(line) for line in path.read_bytes().splitlines()]


def test_same_policy_moves_nobody(history: Path) -> None:
    policy = parse_policy(DEFAULT_TEXT)
    diff, rejected = policy_diff.from_events(events_of(history), policy, policy)
    assert diff.customers == 200 and diff.moved == 0 and not rejected
    assert all(a == b for a, b in diff.moves)


def test_stricter_key_accounts_move_down_with_their_reasons(history: Path) -> None:
    old, new = parse_policy(DEFAULT_TEXT), parse_policy(stricter_text())
    diff, _ = policy_diff.from_events(events_of(history), old, new)
    assert sum(diff.moves.values()) == diff.customers == 200
    demoted = diff.moves[("A", "B")]
    assert demoted > 0
    assert set(diff.moves) - {(t, t) for t in "ABCD"} == {("A", "B")}  # nobody else changes
    for move in diff.examples[("A", "B")]:
        metrics = move.metrics
        assert not (metrics["revenue_365d"] >= 50000 and metrics["orders_365d"] >= 12), move
    sizes = {tier: (a, b) for tier, a, b in diff.sizes()}
    assert sizes["A"][1] == sizes["A"][0] - demoted
    assert sizes["B"][1] == sizes["B"][0] + demoted


def test_from_states_compares_current_tier_with_new_eligibility(history: Path) -> None:
    old, new = parse_policy(DEFAULT_TEXT), parse_policy(stricter_text())
    replay = Replay(old)
    events = sorted(events_of(history), key=lambda e: e.at)
    for event in events:
        replay.feed(event)
    diff = policy_diff.from_states(replay.states.values(), old, new, replay.clock)
    for (a, b), moves in diff.examples.items():
        for move in moves:
            state = replay.states[move.customer]
            assert state.tier == a
            assert new.tier_ids[new.eligible(new.values(state, replay.clock))] == b
    assert diff.customers == len(replay.states)


def test_cli_prints_matrix_and_json(history: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    strict = tmp_path / "stricter.yaml"
    strict.write_text(stricter_text(), encoding="utf-8")
    assert main(["policy", "diff", "default", str(strict), "--events", str(history)]) == 0
    out = capsys.readouterr().out
    assert "Transition matrix" in out and "A -> B" in out
    assert main(["policy", "diff", "default", str(strict), "--events", str(history),
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["new"]["name"] == "stricter" and result["moved"] > 0
    assert sum(cell["customers"] for cell in result["matrix"]) == result["customers"] == 200
