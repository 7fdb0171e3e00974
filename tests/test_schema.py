"""The published schemas: current with the models, and true of real inputs and outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st
from jsonschema import Draft7Validator, Draft202012Validator
from msgspec.structs import replace
from pydantic import ValidationError

from models.errors import InvalidEventError
from models.events import parse_event
from models.instants import MICROS_PER_DAY
from models.outputs import (
    AxisChange,
    AxisChangeData,
    CustomerTier,
    Decision,
    DecisionData,
    Followup,
    FollowupData,
    Output,
    OutputEvent,
    OutputType,
    PolicyName,
    PolicyRef,
)
from rules import sketches
from streams.cli import schema
from streams.cli.asyncapi import default_settings
from streams.cli.main import main
from streams.worker import population
from tests import node_tools
from tests.example_run import example_lines, example_run

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = ROOT / "schemas"


def validator(name: str) -> Draft202012Validator:
    document = json.loads((SCHEMAS / schema.file_name(name)).read_text())
    Draft202012Validator.check_schema(document)
    return Draft202012Validator(document, format_checker=Draft202012Validator.FORMAT_CHECKER)


def test_committed_files_are_current() -> None:
    assert schema.stale(SCHEMAS) == [], "run `tierstream schema` and commit schemas/"


def test_cli_writes_then_checks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "--check", "--out", str(tmp_path)]) == 1
    assert "asyncapi.yaml: missing" in capsys.readouterr().err
    assert main(["schema", "--out", str(tmp_path)]) == 0
    written = capsys.readouterr().out.split()
    assert sorted(Path(p).name for p in written) == sorted(p.name for p in SCHEMAS.iterdir())
    assert main(["schema", "--check", "--out", str(tmp_path)]) == 0
    (tmp_path / "tier-change.schema.json").write_text("{}\n")
    assert main(["schema", "--check", "--out", str(tmp_path)]) == 1
    assert "tier-change.schema.json: stale" in capsys.readouterr().err


@pytest.mark.parametrize("line", [line for line in example_lines() if line.startswith(b"{")
                                  and line.endswith(b"}")], ids=lambda line: line[:40].decode())
def test_schema_and_parser_agree_on_every_example(line: bytes) -> None:
    try:
        parse_event(line)
        accepted = True
    except InvalidEventError:
        accepted = False
    assert validator("InputEvent").is_valid(json.loads(line)) == accepted


@pytest.mark.parametrize(("change", "valid"), [
    ({"amount": 12.5}, True), ({"amount": "0.99"}, True), ({"amount": "-1"}, False),
    ({"amount": 2e12}, False), ({"occurred_at": "2026-01-05T10:00:00"}, False),
    ({"currency": "cny"}, False), ({"type": None}, False), ({"extra": 1}, False),
])
def test_input_schema_edges(change: dict, valid: bool) -> None:
    event = {"event_id": "e1", "type": "order_completed", "customer_id": "c1", "order_id": "o1",
             "occurred_at": "2026-01-05T10:00:00+08:00", "amount": "10.00", "currency": "CNY"}
    event = {k: v for k, v in {**event, **change}.items() if v is not None}
    assert validator("InputEvent").is_valid(event) == valid


def ajv(documents: dict[str, list]) -> dict[str, list[str | None]]:
    """Each document validated by ajv (strict mode, formats asserted) against the schema file
    named: None, or its first error. Every schema compiles in strict mode, or this fails."""
    return json.loads(node_tools.run("schemas.mjs", json.dumps(documents), str(SCHEMAS)))


def schema_file(output: Output) -> str:
    """The schema file an output names as its `dataschema`."""
    name = output.dataschema.removeprefix("urn:tierstream:schema:").rsplit(":", 1)[0]
    return f"{name}.schema.json"


def test_ajv_strict_accepts_what_tierstream_writes_and_reads() -> None:
    run, outputs = example_run()
    documents: dict[str, list] = {}
    for output in outputs:
        documents.setdefault(schema_file(output), []).append(output.document())
    documents["customer-tier.schema.json"] = [json.loads(CustomerTier.record(s))
                                              for s in run.states.values()]
    lines = [line for line in example_lines() if line.startswith(b"{") and line.endswith(b"}")]
    documents["input-event.schema.json"] = [json.loads(line) for line in lines]
    results = ajv(documents)
    assert sorted(results) == sorted(p.name for p in SCHEMAS.glob("*.schema.json"))
    for name, errors in results.items():
        if name != "input-event.schema.json":
            assert errors == [None] * len(documents[name]), name
    parsed = []
    for line in lines:
        try:
            parse_event(line)
            parsed.append(True)
        except InvalidEventError:
            parsed.append(False)
    assert [error is None for error in results["input-event.schema.json"]] == parsed


@pytest.mark.parametrize("change", [
    {"time": "yesterday"}, {"time": "2026-01-05 02:00:00"}, {"id": ""}, {"id": "42"},
    {"source": ""}, {"source": "/tierstream/policies/default"}, {"subject": ""},
    {"sequence": "2"}, {"sequence": ""}, {"partitionkey": ""},
    {"dataschema": "urn:tierstream:schema:followup:2"}, {"specversion": "0.3"},
], ids=lambda change: "-".join(f"{k}={v}" for k, v in change.items()))
def test_ajv_strict_and_the_contract_refuse_a_loose_envelope(change: dict) -> None:
    output = next(o for o in example_run()[1] if o.type == "tierstream.tier.upgraded")
    document = {**output.document(), **change}
    assert ajv({"tier-change.schema.json": [document]})["tier-change.schema.json"] != [None]
    assert not validator("TierChange").is_valid(document)
    with pytest.raises(ValidationError):
        OutputEvent.model_validate(document)


def test_replayed_outputs_validate_against_their_topic_schema() -> None:
    schemas = {name: validator(name) for name in ("TierChange", "Followup", "AxisChange",
                                                   "ChurnWarning")}
    _, outputs = example_run()
    kinds = {o.topic_kind for o in outputs}
    assert kinds == {"tier-changes", "churn-warnings"}
    for output in outputs:
        document = json.loads(output.record())
        mine = "ChurnWarning" if output.topic_kind == "churn-warnings" else \
            "Followup" if output.type.startswith("tierstream.followup.") else \
            "AxisChange" if output.type.startswith("tierstream.axis.") else "TierChange"
        assert [name for name, schema in schemas.items() if schema.is_valid(document)] == [mine]


def test_outputs_write_what_their_contract_writes() -> None:
    _, outputs = example_run()
    # every kind of output (a recovery has the fields of a warning, which the example has; the
    # default lifecycle moves at once, tests/test_axes.py writes an axis.downgrade_warning)
    assert {o.type for o in outputs} == set(OutputType.__args__) - {
        "tierstream.churn.recovered", "tierstream.axis.downgrade_warning"}
    for output in outputs:
        written = output.record()
        assert written == OutputEvent.model_validate_json(written).model_dump_json().encode()
        assert output.document() == json.loads(written)
    assert list(Output.__struct_fields__) == list(OutputEvent.model_fields)
    assert list(Decision.__struct_fields__) == list(DecisionData.model_fields)
    assert list(Followup.__struct_fields__) == list(FollowupData.model_fields)
    assert list(AxisChange.__struct_fields__) == list(AxisChangeData.model_fields)
    assert list(PolicyName.__struct_fields__) == list(PolicyRef.model_fields)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=5), st.floats() | st.integers(-2**60, 2**60) | st.text()))
@example({"p": 1e-5, "q": 1.5e-6, "r": 1e-7, "s": 3.2e-5, "t": 1e16, "u": 1e22, "v": -0.0,
          "w": 9999999999999998.0, "x": 5e-324, "y": float("inf"), "z": float("nan")})
def test_an_output_writes_any_metric_value_as_its_contract_does(metrics: dict) -> None:
    first = example_run()[1][0]
    output = replace(first, data=replace(first.data, metrics=metrics))
    contract = OutputEvent.model_validate(output.document())
    assert output.record() == contract.model_dump_json().encode()


def test_customer_tier_record_is_what_the_worker_writes() -> None:
    records = validator("CustomerTier")
    run, _ = example_run()
    for state in run.states.values():
        written = CustomerTier.record(state)
        records.validate(json.loads(written))
        assert written == CustomerTier.from_state(state).model_dump_json(
            exclude_defaults=True).encode()


def test_asyncapi_has_a_channel_per_topic_and_resolvable_refs() -> None:
    text = (SCHEMAS / schema.ASYNCAPI_FILE).read_text()
    document = yaml.safe_load(text)
    assert document["asyncapi"] == "3.0.0"
    topics = default_settings().topics.model_dump().values()
    channels = document["channels"].values()
    assert sorted(c["address"] for c in channels) == sorted(topics)
    compacted = document["channels"]["customerTiers"]["bindings"]["kafka"]
    assert compacted["topicConfiguration"]["cleanup.policy"] == ["compact"]
    assert {c["address"]: c["bindings"]["kafka"]["partitions"] for c in channels} == {
        topic: 1 if topic == "tierstream-population" else 8 for topic in topics}
    for ref in _refs(document):
        _resolve(document, ref)
    for component in document["components"]["schemas"].values():
        Draft7Validator.check_schema(component)


def test_dead_letter_headers_are_the_workers() -> None:
    document = yaml.safe_load((SCHEMAS / schema.ASYNCAPI_FILE).read_text())
    headers = document["components"]["messages"]["DeadLetter"]["headers"]
    assert set(headers["required"]) == {"source_topic", "source_partition", "source_offset",
                                        "reason", "error"}


def test_population_reports_are_as_documented() -> None:
    document = yaml.safe_load((SCHEMAS / schema.ASYNCAPI_FILE).read_text())
    payload = document["components"]["messages"]["PopulationReport"]["payload"]
    reports = [population.Report(day, 2, {"revenue_365d": sketches.sketch([1.0, 2.5])})
               for day in (2 * MICROS_PER_DAY, MICROS_PER_DAY)]
    Draft7Validator(payload).validate(json.loads(population.encode(3, 8, reports)))


def _refs(node: object) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [r for value in node.values() for r in _refs(value)]
    if isinstance(node, list):
        return [r for item in node for r in _refs(item)]
    return []


def _resolve(document: dict, ref: str) -> object:
    assert ref.startswith("#/"), ref
    node: object = document
    for part in ref[2:].split("/"):
        assert isinstance(node, dict) and part in node, f"unresolved {ref}"
        node = node[part]
    return node
