"""The worker's counters of outputs: each output counted once, under the labels of its kind."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

from rules.policy_file import parse_policy
from streams.worker.metrics import Metrics
from streams.worker.runtime import Runtime
from tests.builders import day, order, replay

DEFAULT = parse_policy((Path(__file__).parents[1] / "rules/policies/default.yaml").read_text())


def test_each_output_is_counted_once_under_its_labels() -> None:
    events = [order(f"c{n}", day(n), amount, f"o{n}-{k}")
              for n, amount in enumerate((300.0, 6000.0, 30000.0)) for k in range(7)]
    _, outputs = replay(events, DEFAULT, until=day(800))
    kinds = Counter(o.type.split(".")[1] for o in outputs)
    assert {"tier", "axis", "followup", "churn"} <= kinds.keys()  # every kind of label
    metrics = Metrics.create()
    Runtime._count_outputs(SimpleNamespace(metrics=metrics), outputs[:7])  # two batches
    Runtime._count_outputs(SimpleNamespace(metrics=metrics), outputs[7:])

    expected: Counter[tuple[str, tuple[tuple[str, str], ...]]] = Counter()
    for output in outputs:
        data, kind = json.loads(output.record())["data"], output.type.split(".")[1]
        if kind == "followup":
            labels = {"type": output.type, "tier": data["tier"], "channel": data["channel"]}
            expected["tierstream_followups_total", tuple(labels.items())] += 1
        elif kind == "axis":
            labels = {"type": output.type, "axis": data["axis"],
                      "from_class": data["from_class"] or "", "to_class": data["to_class"]}
            expected["tierstream_axis_transitions_total", tuple(labels.items())] += 1
        else:
            labels = {"type": output.type, "from_tier": data["from_tier"] or "",
                      "to_tier": data["to_tier"] or ""}
            expected["tierstream_tier_transitions_total", tuple(labels.items())] += 1
            if output.type == "tierstream.churn.warning":
                expected["tierstream_churn_warnings_total", (("rule", data["rule"]),)] += 1
    counted = {(name, tuple(labels.items())): metrics.registry.get_sample_value(name, labels)
               for name, labels in ((name, dict(pairs)) for name, pairs in expected)}
    assert counted == expected
