"""The `tierstream` command line: replay outputs, dead letters, exit codes, policy commands."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from streams.cli import replay_job
from streams.cli.main import main

GOOD = [
    {"type": "order_completed", "event_id": "e1", "customer_id": "c1",
     "occurred_at": "2026-01-05T10:00:00+08:00", "order_id": "o1", "amount": "6000.00",
     "currency": "CNY"},
    {"type": "interaction", "event_id": "e2", "customer_id": "c2",
     "occurred_at": "2026-01-06T09:00:00Z", "kind": "visit"},
    {"type": "order_completed", "event_id": "e3", "customer_id": "c2",
     "occurred_at": "2026-01-07T09:00:00Z", "order_id": "o2", "amount": 100, "currency": "USD"},
]
BAD = [
    (b"{not json", "not_json"),
    (b'{"type": "order_shipped", "event_id": "x"}', "unknown_type"),
    (b'{"type": "order_completed", "event_id": "e9", "customer_id": "c9", '
     b'"occurred_at": "2026-01-05T10:00:00", "order_id": "o9", "amount": 5, '
     b'"currency": "CNY"}', "invalid_field"),
    (b'{"type": "order_completed", "event_id": "e8", "customer_id": "c8", '
     b'"occurred_at": "2026-01-05T10:00:00Z", "order_id": "o8", "amount": 5, '
     b'"currency": "JPY"}', "unknown_currency"),
    (b"\xff\xfe garbage", "not_utf8"),
]


def write_events(path: Path, bad: bool = True) -> Path:
    lines = [json.dumps(e).encode() for e in GOOD]
    if bad:
        lines[1:1] = [raw for raw, _ in BAD]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_replay_writes_outputs_dead_letters_and_states(tmp_path: Path) -> None:
    events = write_events(tmp_path / "events.jsonl")
    status = main(["replay", str(events), "--as-of", "2026-02-01", "--out",
                   str(tmp_path / "out.jsonl"), "--dead-letters", str(tmp_path / "dead.jsonl"),
                   "--state-out", str(tmp_path / "state.jsonl")])
    assert status == 0
    outputs = read_jsonl(tmp_path / "out.jsonl")
    assert [(o["subject"], o["type"], o["data"].get("to_tier", o["data"].get("to_class")))
            for o in outputs] == [
        ("c1", "io.github.tierstream.tier.assigned", "B"),
        ("c1", "io.github.tierstream.axis.assigned", "new"),
        ("c2", "io.github.tierstream.tier.assigned", "D"),
        ("c2", "io.github.tierstream.axis.assigned", "prospect"),
        ("c2", "io.github.tierstream.tier.upgraded", "C"),
        ("c2", "io.github.tierstream.axis.upgraded", "new"),
    ]
    first = outputs[0]
    assert first["specversion"] == "1.0" and first["time"] == "2026-01-05T02:00:00Z"
    assert first["sequence"] == "00000000000000000001"
    assert first["data"]["policy"]["name"] == "default"
    assert first["data"]["metrics"]["revenue_365d"] == 6000.0
    dead = read_jsonl(tmp_path / "dead.jsonl")
    assert [d["reason"] for d in dead] == [reason for _, reason in BAD if reason !=
                                           "unknown_currency"] + ["unknown_currency"]
    assert all(d["error"] and d["source"].endswith("events.jsonl") for d in dead)
    assert dead[0]["raw"] == "{not json" and dead[0]["line"] == 2
    assert "raw_base64" in next(d for d in dead if d["reason"] == "not_utf8")
    states = {s["customer_id"]: s for s in read_jsonl(tmp_path / "state.jsonl")}
    assert states["c1"]["tier"] == "B" and states["c1"]["churn"] is False
    assert states["c2"]["metrics"]["revenue_365d"] == pytest.approx(710.0)
    assert states["c1"]["as_of"] == "2026-02-01T00:00:00Z"
    assert states["c1"]["axes"] == {"lifecycle": {"class": "new",
                                                  "since": "2026-01-05T02:00:00Z"}}


def test_replay_is_deterministic_across_input_order(tmp_path: Path) -> None:
    forward = write_events(tmp_path / "a.jsonl", bad=False)
    backward = tmp_path / "b.jsonl"
    backward.write_text("".join(reversed(forward.read_text().splitlines(keepends=True))))
    for name in ("a", "b"):
        assert main(["replay", str(tmp_path / f"{name}.jsonl"), "--out",
                     str(tmp_path / f"{name}.out")]) == 0
    assert (tmp_path / "a.out").read_text() == (tmp_path / "b.out").read_text()


def test_strict_exits_non_zero_but_processes_everything(tmp_path: Path) -> None:
    events = write_events(tmp_path / "events.jsonl")
    out = tmp_path / "out.jsonl"
    assert main(["replay", str(events), "--strict", "--out", str(out)]) == 1
    assert len(read_jsonl(out)) == 6


def test_as_of_before_last_event_is_a_clear_error(tmp_path: Path, capsys) -> None:
    events = write_events(tmp_path / "events.jsonl", bad=False)
    assert main(["replay", str(events), "--as-of", "2025-01-01", "--out",
                 str(tmp_path / "o")]) == 2
    assert "before the last event" in capsys.readouterr().err


def test_csv_with_column_mapping(tmp_path: Path) -> None:
    source = tmp_path / "orders.csv"
    source.write_text("cust,when,total,cur\nc1,2026-01-01T00:00:00Z,25000,CNY\n"
                      "c1,2026-01-02T00:00:00Z,oops,CNY\n")
    status = main(["replay", str(source), "--columns",
                   "customer_id=cust,occurred_at=when,amount=total,currency=cur",
                   "--out", str(tmp_path / "out.jsonl"),
                   "--dead-letters", str(tmp_path / "dead.jsonl")])
    assert status == 0
    assert [o["data"]["to_tier"] for o in read_jsonl(tmp_path / "out.jsonl")
            if o["type"].startswith("io.github.tierstream.tier.")] == ["B"]
    dead = read_jsonl(tmp_path / "dead.jsonl")
    assert dead[0]["line"] == 3 and "amount" in dead[0]["error"]


def test_unknown_policy_file_and_invalid_policy(tmp_path: Path, capsys) -> None:
    events = write_events(tmp_path / "events.jsonl", bad=False)
    assert main(["replay", str(events), "--policy", str(tmp_path / "nope.yaml")]) == 3
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\nversion: '1'\ntiers:\n  - id: A\n    when: revnue_30d > 1.0\n"
                      "  - id: B\nwindows: [30d]\n")
    assert main(["policy", "validate", str(broken)]) == 3
    err = capsys.readouterr().err
    assert "broken.yaml:5" in err and "revenue_30d" in err


def test_policy_validate_and_explain_shipped_policy(capsys) -> None:
    assert main(["policy", "validate", "default"]) == 0
    assert "policy default" in capsys.readouterr().out
    assert main(["policy", "explain", "default"]) == 0
    text = capsys.readouterr().out
    for fragment in ("grace period", "days_since_last_order", "key_account_silent",
                     "downgrade_warning"):
        assert fragment in text


def test_console_script_help() -> None:
    result = subprocess.run([sys.executable, "-m", "streams.cli", "replay", "--help"],
                            capture_output=True, text=True, check=True)
    assert "--as-of" in result.stdout and "--dead-letters" in result.stdout



def test_replay_past_its_memory_sorts_on_disk_with_the_same_result(tmp_path: Path,
                                                                  monkeypatch, capsys) -> None:
    events = Path(__file__).parent / "data" / "cdnow_slice.txt"  # 218 purchases
    whole, runs = tmp_path / "whole.jsonl", tmp_path / "runs.jsonl"
    monkeypatch.setattr(replay_job, "available_memory", lambda: None)  # unknown: in memory
    assert main(["replay", str(events), "--format", "cdnow", "--out", str(whole)]) == 0
    assert "sorted on disk" not in capsys.readouterr().err
    monkeypatch.setattr(replay_job, "MIN_RUN", 16)
    spill = tmp_path / "spill"
    spill.mkdir()
    assert main(["replay", str(events), "--format", "cdnow", "--out", str(runs),
                 "--max-memory", "1K", "--tmp-dir", str(spill)]) == 0  # 13 runs of 16, and the rest
    err = capsys.readouterr().err
    assert re.search(r"sorted on disk\W+13 runs", err)
    assert "at most 16 events fit in half of the 1.0 KiB allowed by --max-memory" in " ".join(
        err.split())  # (rich wraps the line)
    assert runs.read_text() == whole.read_text() and whole.read_text().count("\n") > 100
    assert list(spill.iterdir()) == []  # the runs are gone


def test_replay_without_a_known_memory_size_sorts_in_memory(tmp_path: Path,
                                                            monkeypatch) -> None:
    events = write_events(tmp_path / "events.jsonl")
    monkeypatch.setattr(replay_job, "available_memory", lambda: None)
    assert main(["replay", str(events), "--out", str(tmp_path / "out.jsonl")]) == 0


def test_replay_max_memory_must_be_a_size(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["replay", "x.jsonl", "--max-memory", "lots"])
    assert exit_.value.code == 2
    assert "'lots' is not a size such as 500M, 8G or 8GiB" in capsys.readouterr().err


def test_replay_prints_progress_lines_when_stderr_is_not_a_terminal(tmp_path: Path,
                                                                    monkeypatch,
                                                                    capsys) -> None:
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE"):  # would make rich call stderr a terminal
        monkeypatch.delenv(name, raising=False)
    events = write_events(tmp_path / "events.jsonl")
    sizes = [len(line) for line in events.read_bytes().splitlines(keepends=True)]
    ticks = iter(range(1000))  # a clock one second further at every look
    monkeypatch.setattr(replay_job, "progress_clock", lambda: float(next(ticks)))
    monkeypatch.setattr(replay_job, "PROGRESS_INTERVAL_S", 1.0)
    assert main(["replay", str(events), "--out", str(tmp_path / "out.jsonl")]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines()
             if line.startswith("replay: ")]
    total = sum(sizes)
    assert total < 1024 and len(sizes) == 8  # sizes in bytes, a line at every line read
    # the clock: 0 at the start, 1 when reading starts, 2 after the first line, ...
    left = round((total - sizes[0]) / sizes[0])  # at sizes[0] B/s
    assert lines[0] == (f"replay: reading {sizes[0]} B of {total} B "
                        f"({sizes[0] / total:.1%}), {sizes[0]} B/s, about {left}s left")
    assert lines[7] == f"replay: reading {total} B of {total} B (100.0%), {total / 8:.0f} B/s"
    # the 3 good events and the one in an unknown currency (rejected as it is replayed)
    assert lines[8:] == ["replay: replaying 4 of 4 events (100.0%), 4 events/s"]


def test_version_names_the_package_and_engine(capsys) -> None:
    from importlib.metadata import version
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith(f"tierstream {version('tierstream')} (engine: ")


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_completion_scripts_know_the_commands_and_options(shell: str, capsys) -> None:
    assert main(["completion", shell]) == 0
    script = capsys.readouterr().out
    for word in ("replay", "worker", "tail", "--bootstrap-server", "--from-beginning",
                 "--as-of"):
        assert word in script, word
    if shell == "bash":
        checked = subprocess.run(["bash", "-n"], input=script, text=True, capture_output=True,
                                 check=False)
        assert checked.returncode == 0, checked.stderr


def test_policy_validate_json_says_each_file_and_exits_3_for_an_invalid_one(
        tmp_path: Path, capsys) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\nversion: '1'\ntiers:\n  - id: A\n    when: revnue_30d > 1.0\n"
                      "  - id: B\nwindows: [30d]\n")
    assert main(["policy", "validate", "default", str(broken), "--json"]) == 3
    out = capsys.readouterr().out
    first, second = json.loads(out)
    assert first["valid"] and first["policy"] == "default" and first["tiers"] == list("ABCD")
    assert first["axes"]["lifecycle"][0] == "new" and "revenue_365d" in first["metrics"]
    assert second["valid"] is False and "broken.yaml:5" in second["error"]


def test_replay_json_summary(tmp_path: Path, capsys) -> None:
    events = write_events(tmp_path / "events.jsonl")
    assert main(["replay", str(events), "--json", "--out", str(tmp_path / "out.jsonl")]) == 0
    summary = json.loads(capsys.readouterr().err.splitlines()[0])
    assert summary["policy"]["name"] == "default"
    assert (summary["lines"], summary["events"]) == (len(GOOD) + len(BAD), len(GOOD))
    assert summary["rejected"] == {reason: 1 for _, reason in BAD}
    outputs = read_jsonl(tmp_path / "out.jsonl")
    assert sum(summary["outputs"].values()) == len(outputs)
    assert sum(summary["customers"].values()) == 2


def test_kafka_commands_take_the_brokers_and_exit_4_when_they_cannot_be_used(
        monkeypatch, capsys) -> None:
    from models.errors import ConnectError
    from streams.kafka import topics

    seen = []

    def unreachable(settings):
        seen.append(settings.bootstrap_servers)
        raise ConnectError(f"cannot use Kafka at {settings.bootstrap_servers}")

    monkeypatch.setattr(topics, "describe", unreachable)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "from-env:9092")
    assert main(["topics", "describe"]) == 4
    assert main(["topics", "describe", "-b", "kafka-1:9092,kafka-2:9092"]) == 4
    assert main(["topics", "describe", "--bootstrap-server", "k:1", "--json"]) == 4
    assert seen == ["from-env:9092", "kafka-1:9092,kafka-2:9092", "k:1"]
    assert "unavailable: cannot use Kafka at k:1" in capsys.readouterr().err
    for command in (["worker"], ["ingest"], ["tail"], ["simulate"], ["redis", "rebuild"],
                    ["topics", "create"], ["policy", "diff", "default", "rfm", "--live"]):
        with pytest.raises(SystemExit) as exit_:
            main([*command, "--help"])
        assert exit_.value.code == 0
        assert "--bootstrap-server" in capsys.readouterr().out, command


SHOP_EXPORT = """Name,Email,Created at,Total,Currency,Lineitem name
#1001,alice@example.com,2026-01-05 10:00:00,120.00,CNY,Shirt
#1001,alice@example.com,,,,Socks
#1001,alice@example.com,,,,Belt
#1002,bob@example.com,2026-01-06,80.00,CNY,Hat
#1003,carol@example.com,2026-01-07T09:30:00+00:00,15.00,CNY,Pin
"""
SHOP_COLUMNS = ("order_id=Name,customer_id=Email,occurred_at=Created at,amount=Total,"
                "currency=Currency")


def test_csv_line_items_are_one_order_and_local_times_take_the_time_zone(tmp_path: Path
                                                                        ) -> None:
    export = tmp_path / "orders.csv"
    export.write_text(SHOP_EXPORT)
    out, dead = tmp_path / "out.jsonl", tmp_path / "dead.jsonl"
    assert main(["replay", str(export), "--columns", SHOP_COLUMNS, "--timezone", "Asia/Shanghai",
                 "--out", str(out), "--dead-letters", str(dead), "--strict"]) == 0
    assigned = {e["subject"]: e for e in read_jsonl(out)
                if e["type"] == "io.github.tierstream.tier.assigned"}
    assert {c: e["time"] for c, e in assigned.items()} == {
        "alice@example.com": "2026-01-05T02:00:00Z",   # 10:00 in Shanghai
        "bob@example.com": "2026-01-05T16:00:00Z",     # the day's midnight in Shanghai
        "carol@example.com": "2026-01-07T09:30:00Z"}   # its own offset
    assert assigned["alice@example.com"]["data"]["metrics"]["revenue_365d"] == 120.0
    assert dead.read_text() == ""

    # without a time zone, local times are refused, each order with all of its rows
    assert main(["replay", str(export), "--columns", SHOP_COLUMNS, "--out", str(out),
                 "--dead-letters", str(dead)]) == 0
    rejected = read_jsonl(dead)
    assert [(r["line"], r["reason"]) for r in rejected] == [(2, "invalid_field"),
                                                            (5, "invalid_field")]
    assert "--timezone" in rejected[0]["error"]
    assert rejected[0]["raw"].splitlines() == SHOP_EXPORT.splitlines()[1:4]


def test_an_unknown_time_zone_is_a_usage_error(tmp_path: Path, capsys) -> None:
    export = tmp_path / "orders.csv"
    export.write_text(SHOP_EXPORT)
    assert main(["replay", str(export), "--columns", SHOP_COLUMNS, "--timezone", "Mars/Base"]) == 2
    assert "unknown time zone 'Mars/Base'" in capsys.readouterr().err


@pytest.mark.parametrize(("prefix", "first_type"), [
    (None, "io.github.tierstream.tier.assigned"),
    ("com.example.crm", "com.example.crm.tier.assigned"),
    ("tierstream", "tierstream.tier.assigned"),  # the names of contracts format 1
])
def test_output_types_take_the_configured_prefix_and_keep_their_ids(
        tmp_path: Path, monkeypatch, prefix: str | None, first_type: str) -> None:
    events = write_events(tmp_path / "events.jsonl", bad=False)
    if prefix is not None:
        monkeypatch.setenv("TIERSTREAM_EVENT_TYPE_PREFIX", prefix)
    assert main(["replay", str(events), "--out", str(tmp_path / "out.jsonl")]) == 0
    outputs = read_jsonl(tmp_path / "out.jsonl")
    assert outputs[0]["type"] == first_type
    monkeypatch.delenv("TIERSTREAM_EVENT_TYPE_PREFIX", raising=False)
    assert main(["replay", str(events), "--out", str(tmp_path / "default.jsonl")]) == 0
    assert [o["id"] for o in outputs] == [o["id"] for o in read_jsonl(tmp_path / "default.jsonl")]


def test_a_prefix_that_is_no_reverse_dns_name_is_refused(tmp_path: Path, monkeypatch,
                                                          capsys) -> None:
    monkeypatch.setenv("TIERSTREAM_EVENT_TYPE_PREFIX", "Not A/Name")
    events = write_events(tmp_path / "events.jsonl", bad=False)
    assert main(["replay", str(events), "--out", str(tmp_path / "out.jsonl")]) == 2
    assert "event_type_prefix" in capsys.readouterr().err


def test_rows_of_an_order_that_are_no_line_items_stay_events(tmp_path: Path, capsys) -> None:
    export = tmp_path / "orders.csv"
    export.write_text("type,event_id,order_id,customer_id,occurred_at,amount,currency\n"
                      "order_completed,e1,o1,c1,2026-01-05T10:00:00Z,100,CNY\n"
                      "order_completed,e2,o1,c1,2026-01-05T10:00:00Z,100,CNY\n"
                      "order_refunded,e3,o1,c1,2026-01-06T10:00:00Z,40,CNY\n"
                      "order_cancelled,e4,o1,c1,2026-01-07T10:00:00Z,,\n")
    out = tmp_path / "out.jsonl"
    assert main(["replay", str(export), "--out", str(out), "--json", "--strict"]) == 0
    # the repeated row is a line item; the refund and the cancellation are events
    summary = json.loads(capsys.readouterr().err.splitlines()[0])
    assert (summary["lines"], summary["events"]) == (3, 3)
    states = tmp_path / "states.jsonl"
    assert main(["replay", str(export), "--out", str(out), "--state-out", str(states)]) == 0
    (state,) = read_jsonl(states)
    assert state["metrics"]["orders_total"] == 0  # cancelled
