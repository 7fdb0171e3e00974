"""`tierstream simulate`: deterministic, valid, ordered events; honest noise; a spread of tiers."""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path

import pytest

from models.errors import InvalidEventError
from models.events import Interaction, parse_event
from models.instants import to_micros
from rules.replay import event_order
from streams.cli import simulate_job
from streams.cli.main import main
from streams.dev.simulate import Population, population_events, seasonality, to_record, with_noise

START = datetime(2024, 1, 1, tzinfo=UTC)


def values(population: Population, malformed: float = 0.0, duplicates: float = 0.0) -> list:
    return [r.value for r in simulate_job.records(population, malformed, duplicates, live=False)]


def test_the_same_seed_gives_the_same_events_and_another_seed_others() -> None:
    population = Population(40, 3, START, 365)
    assert values(population, 0.05, 0.05) == values(population, 0.05, 0.05)
    assert values(population) != values(Population(40, 4, START, 365))


def test_a_customer_history_does_not_depend_on_how_many_others_are_simulated() -> None:
    def history_of(customer: str, customers: int) -> list[dict]:
        events = population_events(Population(customers, 3, START, 365))
        return [e for e in events if e["customer_id"] == customer]

    assert history_of("s3-c00007", 10) == history_of("s3-c00007", 30) != []


def test_events_are_valid_in_event_time_order_keyed_and_routed_by_type() -> None:
    population = Population(60, 5, START, 730)
    records = list(map(to_record, population_events(population)))
    events = [parse_event(r.value) for r in records]
    assert events == sorted(events, key=event_order)
    for record, event in zip(records, events, strict=True):
        assert record.key == event.customer_id.encode()
        assert record.topic == ("interactions" if isinstance(event, Interaction) else "orders")
        assert to_micros(START) <= event.at <= to_micros(population.end)
    kinds = Counter(r.kind for r in records)
    for kind in ("order_completed", "order_refunded", "order_cancelled",
                 "interaction/complaint", "interaction/visit"):
        assert kinds[kind] > 0, kinds


def test_refunds_and_cancellations_follow_an_earlier_order_of_the_customer() -> None:
    placed: dict[str, int] = {}
    for event in map(parse_event, values(Population(60, 5, START, 730))):
        if event.type == "order_completed":
            placed[event.order_id] = event.at
        elif event.type in ("order_refunded", "order_cancelled"):
            assert placed[event.order_id] < event.at


def test_noise_comes_in_about_the_shares_asked_for() -> None:
    records = list(simulate_job.records(Population(150, 9, START, 730), 0.05, 0.03, live=False))
    kinds = Counter("malformed" if r.kind.startswith("malformed/") else r.kind for r in records)
    assert kinds["malformed"] / len(records) == pytest.approx(0.05, abs=0.01)
    assert kinds["duplicate"] / len(records) == pytest.approx(0.03, abs=0.01)
    assert len({r.kind for r in records if r.kind.startswith("malformed/")}) == 7


def test_every_malformed_record_is_rejected_and_every_duplicate_repeats_an_earlier_one() -> None:
    seen: set[bytes] = set()
    for record in simulate_job.records(Population(80, 2, START, 730), 0.1, 0.1, live=False):
        if record.kind.startswith("malformed/"):
            with pytest.raises(InvalidEventError):
                parse_event(record.value)
            assert b"\n" not in record.value
        elif record.kind == "duplicate":
            assert record.value in seen
        else:
            parse_event(record.value)
            seen.add(record.value)


def test_noise_leaves_the_valid_events_as_they_were() -> None:
    population = Population(30, 4, START, 365)
    clean = [to_record(e) for e in population_events(population)]
    noisy = with_noise(iter(clean), 0.2, 0.2, random.Random(1))
    assert [r for r in noisy if r.kind in {c.kind for c in clean}] == clean


def test_live_mode_stamps_events_with_the_clock_and_keeps_noise_off_them() -> None:
    now = datetime(2030, 5, 6, 7, 8, 9, tzinfo=UTC)
    records = list(simulate_job.records(Population(5, 1, START, 365), 0.0, 0.0, live=True,
                                        limit=20, clock=lambda: now))
    assert len(records) == 20
    assert {parse_event(r.value).at for r in records} == {to_micros(now)}


def test_pacing_waits_before_taking_each_item() -> None:
    clock, sleeps, taken = [100.0], [], []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock[0] += seconds

    def items():
        for n in range(3):
            taken.append(clock[0])
            yield n

    assert list(simulate_job.paced(items(), 2.0, lambda: clock[0], sleep)) == [0, 1, 2]
    assert taken == [100.0, 100.5, 101.0]
    assert sleeps == [0.5, 0.5, 0.5]  # the last one is spent finding out that nothing is left
    assert list(simulate_job.paced(range(3), 0.0, lambda: 0.0, sleep)) == [0, 1, 2]
    assert len(sleeps) == 3


def test_seasonality_peaks_on_singles_day_and_in_winter() -> None:
    def on(month: int, day: int) -> float:
        return seasonality(datetime(2025, month, day, tzinfo=UTC))

    assert on(11, 11) > on(12, 20) > on(7, 1)


def test_simulated_history_replays_into_a_spread_of_tiers_and_churn_warnings(
        tmp_path: Path) -> None:
    events, outputs, states = (tmp_path / name for name in ("events.jsonl", "out.jsonl",
                                                            "states.jsonl"))
    assert main(["simulate", "--customers", "150", "--seed", "11", "--start", "2024-01-01",
                 "--days", "730", "--malformed", "0.01", "--duplicates", "0.01",
                 "--out", str(events)]) == 0
    assert main(["replay", str(events), "--as-of", "2026-01-01", "--out", str(outputs),
                 "--state-out", str(states)]) == 0
    tiers = Counter(json.loads(line)["tier"] for line in states.read_text().splitlines())
    assert set(tiers) == {"A", "B", "C", "D"}, tiers
    kinds = defaultdict(int)
    for line in outputs.read_text().splitlines():
        kinds[json.loads(line)["type"]] += 1
    assert kinds["io.github.tierstream.churn.warning"] > 0
    assert kinds["io.github.tierstream.tier.downgraded"] > 0


def test_limit_and_stdout(capsysbinary) -> None:
    assert main(["simulate", "--customers", "10", "--start", "2024-01-01", "--limit", "7",
                 "--out", "-"]) == 0
    lines = capsysbinary.readouterr().out.splitlines()
    assert len(lines) == 7 and all(parse_event(line) for line in lines)


@pytest.mark.parametrize("option", [["--malformed", "0.9"], ["--duplicates", "-0.1"],
                                    ["--customers", "0"], ["--days", "0"]])
def test_bad_options_are_usage_errors(option: list[str], tmp_path: Path) -> None:
    assert main(["simulate", *option, "--out", str(tmp_path / "x.jsonl")]) == 2
