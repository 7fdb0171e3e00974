"""Cost of one event against how long its customer has been buying (not a test: prints a table).

    python bench/history_bench.py [--per-day N] [--policy NAME] [--events N]

One customer places N orders a day for up to 50,000 orders under a shipped policy. At each
checkpoint of its lifetime order count, the next `--events` orders are timed one by one as the
worker handles a customer: parse the stored state, apply the order, encode the state again.
The row also shows the orders its state holds one by one, the state's size as stored, and what
reading and writing that state alone costs (decode and encode, as any store of one value per
customer does per event).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from models import stored as codec  # noqa: E402
from models.events import event_from_fields  # noqa: E402
from models.instants import MICROS_PER_DAY, format_instant  # noqa: E402
from rules.engine import apply  # noqa: E402
from streams.policies import load_policy  # noqa: E402

START = 631_152_000 * 1_000_000  # 1990-01-01
CHECKPOINTS = (100, 1_000, 10_000, 50_000)


def order(n: int, per_day: float):
    return event_from_fields({
        "type": "order_completed", "event_id": f"e{n}", "customer_id": "heavy",
        "occurred_at": format_instant(START + int(n / per_day * MICROS_PER_DAY)),
        "order_id": f"o{n}", "amount": 10 + n % 7, "currency": "CNY"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--per-day", type=float, default=2.0, help="orders a day (default 2)")
    parser.add_argument("--policy", default="default", help="a shipped policy or a file")
    parser.add_argument("--events", type=int, default=200, help="timed orders per checkpoint")
    args = parser.parse_args()
    policy = load_policy(args.policy)
    table = Table(title=f"one customer, {args.per_day:g} orders a day, policy {policy.name}")
    for column in ("lifetime orders before", "held one by one after", "state bytes after",
                   "ms per timed event", "of which the state read and written"):
        table.add_column(column, justify="right")
    state, n = None, 0
    for checkpoint in CHECKPOINTS:
        while n < checkpoint:
            state, _ = apply(state, order(n, args.per_day), policy)
            n += 1
        events = [order(n + k, args.per_day) for k in range(args.events)]
        stored = codec.encode(0, state)
        began = time.perf_counter()
        for event in events:
            current = codec.decode(stored)[1]
            current, _ = apply(current, event, policy)
            stored = codec.encode(0, current)
        elapsed = time.perf_counter() - began
        began = time.perf_counter()
        for _ in events:  # what any store of one value per customer pays: decode and encode
            codec.encode(0, codec.decode(stored)[1])
        codec_s = time.perf_counter() - began
        state, n = current, n + args.events
        table.add_row(f"{checkpoint:,}", f"{len(state.orders):,}", f"{len(stored):,}",
                      f"{elapsed / args.events * 1000:.2f}",
                      f"{codec_s / args.events * 1000:.2f}")
    Console().print(table)


if __name__ == "__main__":
    main()
