"""The partition driver alone on the peer job's events, per policy (not a test: prints a table).

    python bench/driver_bench.py [--customers N] [--batch N] [POLICY ...]

The order events of bench/peer_bench.py's job (its generator and seed), in time order, through
one `rules.partition.Partition` as a worker drives one: batches of `--batch` input messages, each
followed by a tick, so that every customer due by the events' time is woken as the worker's ticks
wake it (without ticks only a customer's own next event would). States stay decoded in a dict; no
Kafka, no encoding. Per policy: CPU microseconds per event, outputs per event, and digests of
every output's bytes and of the final states, so that two builds (pure Python and compiled, or
two commits) can be compared both for speed and for identical results.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from datetime import datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from peer_bench import POLICY, generate  # noqa: E402

from models.instants import to_micros  # noqa: E402
from models.state import CustomerState  # noqa: E402
from rules.partition import TICK, Message, Partition  # noqa: E402
from streams import collector, engine_build  # noqa: E402
from streams.policies import load_policy  # noqa: E402


class Store(dict[str, CustomerState]):
    """The driver's store port over a dict."""

    def get(self, customer_id: str) -> CustomerState | None:  # type: ignore[override]
        return dict.get(self, customer_id)


def run(policy_name: str, messages: list[Message], batch: int) -> tuple[float, int, str, str]:
    """CPU seconds, outputs, and the digests of the outputs and of the final states."""
    policy = load_policy(policy_name)
    store = Store()
    driver = Partition(0, policy, store)
    # the wall clock at the last event: none is ahead of it, and a partition reading events
    # never counts as quiet (its clock is event time)
    wall = to_micros(datetime.fromisoformat(json.loads(messages[-1].value)["occurred_at"]))
    outputs, digest = 0, hashlib.sha256()
    started = time.process_time()
    for start in range(0, len(messages), batch):
        effects = driver.run([*messages[start:start + batch], TICK], wall)
        store.update(effects.states)
        for output in effects.outputs:
            digest.update(output.record())
        outputs += len(effects.outputs)
    seconds = time.process_time() - started
    states = hashlib.sha256(repr(sorted(store.items())).encode())
    return seconds, outputs, digest.hexdigest()[:12], states.hexdigest()[:12]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("policies", nargs="*", default=[str(POLICY), "default"],
                        help="shipped policies or files (default: the peer job's, default)")
    parser.add_argument("--customers", type=int, default=20_000,
                        help="customers of the generated input, ~4 orders each (default 20000)")
    parser.add_argument("--batch", type=int, default=2_000,
                        help="input messages per batch, a tick after each (default 2000)")
    parser.add_argument("--seed", type=int, default=11, help="the input's seed (default 11)")
    args = parser.parse_args()
    engine_build.check()
    messages = [Message("orders", offset, json.loads(line)["customer_id"].encode(), line)
                for offset, line in enumerate(generate(args.customers, args.seed))]
    collector.settle()  # the input lives on: left out of every collection
    table = Table(title=f"one partition driver: {len(messages):,} order events of "
                        f"{args.customers:,} customers, a tick after each {args.batch:,}")
    for column, justify in (("policy", "left"), ("us per event (CPU)", "right"),
                            ("outputs per event", "right"), ("outputs digest", "left"),
                            ("states digest", "left")):
        table.add_column(column, justify=justify)
    with collector.tuned():
        for name in args.policies:
            seconds, outputs, outputs_digest, states_digest = run(name, messages, args.batch)
            table.add_row(Path(name).stem, f"{seconds * 1e6 / len(messages):.1f}",
                          f"{outputs / len(messages):.2f}", outputs_digest, states_digest)
    console = Console()
    console.print(table)
    console.print(f"CPython {sys.version.split()[0]}; engine build: {engine_build.build()}")


if __name__ == "__main__":
    main()
