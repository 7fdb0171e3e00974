"""streams/worker/transactions.py against fake producers: what one partition's transaction does
when it commits, when the partition is no longer this worker's, when its producer is fenced and
when anything else fails; and how an assignment replaces the producers. (The real thing, with
Kafka: tests/integration/test_faults.py, the exactly-once cases.)"""

from __future__ import annotations

import asyncio
from collections import namedtuple
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaError, ProducerFenced
from aiokafka.producer.transaction_manager import TransactionState

from streams.worker import faust_fixes
from streams.worker.transactions import MOST_FAILURES, Transactions

APP = SimpleNamespace(conf=SimpleNamespace(id="tierstream-x"))
Tp = namedtuple("Tp", "topic partition")


class FakeProducer:
    def __init__(self, transactional_id: str = "", fail: dict[str, BaseException] | None = None
                 ) -> None:
        self.transactional_id, self.fail, self.calls = transactional_id, fail or {}, []

    async def _call(self, name: str, *args: Any) -> None:
        self.calls.append((name, *args))
        if name in self.fail:
            raise self.fail[name]

    async def start(self) -> None:
        await self._call("start")

    async def stop(self) -> None:
        await self._call("stop")

    async def begin_transaction(self) -> None:
        await self._call("begin")

    async def send_offsets_to_transaction(self, offsets: Any, group_id: str) -> None:
        await self._call("offsets", offsets, group_id)

    async def commit_transaction(self) -> None:
        await self._call("commit")

    async def abort_transaction(self) -> None:
        await self._call("abort")


@pytest.fixture
def rebalances(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    asked: list[Any] = []

    async def request_rebalance(app: Any) -> None:
        asked.append(app)

    monkeypatch.setattr(faust_fixes, "request_rebalance", request_rebalance)
    return asked


def run(producer: FakeProducer, ours: bool = True) -> tuple[bool, Transactions]:
    transactions = Transactions(APP, "tierstream-x", timeout_s=5)
    transactions.producers[3] = producer

    async def send(given: Any) -> None:
        await given._call("send")

    offsets = {Tp("orders", 3): 11, Tp("tierstream-ticks", 3): 4}  # as faust's TP
    return asyncio.run(transactions.run(3, send, offsets, lambda: ours)), transactions


def test_a_batch_commits_with_its_offsets_in_the_transaction() -> None:
    producer = FakeProducer()
    committed, _ = run(producer)
    assert committed
    assert producer.calls == [
        ("begin",), ("send",),
        ("offsets", {TopicPartition("orders", 3): 11, TopicPartition("tierstream-ticks", 3): 4},
         "tierstream-x"),
        ("commit",)]


def test_a_partition_no_longer_ours_aborts_before_committing(rebalances: list) -> None:
    producer = FakeProducer()
    committed, _ = run(producer, ours=False)
    assert not committed
    assert producer.calls == [("begin",), ("send",), ("abort",)]
    assert not rebalances


def test_a_fenced_producer_is_stopped_and_the_group_asked_to_rebalance(rebalances: list
                                                                       ) -> None:
    producer = FakeProducer(fail={"commit": ProducerFenced()})
    committed, transactions = run(producer)
    assert not committed
    assert producer.calls[-2:] == [("commit",), ("stop",)]  # (no abort: it is fenced)
    assert 3 not in transactions.producers  # later batches of the partition commit nothing
    assert rebalances == [APP]


def test_fenced_after_the_partition_went_away_asks_no_rebalance(rebalances: list) -> None:
    producer = FakeProducer(fail={"send": ProducerFenced()})
    transactions = Transactions(APP, "tierstream-x", timeout_s=5)
    transactions.producers[3] = producer

    async def send(given: Any) -> None:
        await given._call("send")

    assert not asyncio.run(transactions.run(3, send, {}, lambda: False))
    assert producer.calls[-1] == ("stop",) and not rebalances


def test_a_kafka_error_aborts_and_rebalances_as_fencing_does(rebalances: list) -> None:
    producer = FakeProducer(fail={"commit": KafkaError("coordinator restarting")})
    committed, transactions = run(producer)
    assert not committed
    assert producer.calls[-2:] == [("abort",), ("stop",)]
    assert 3 not in transactions.producers and rebalances == [APP]


def test_a_transaction_past_its_timeout_aborts_and_rebalances(rebalances: list) -> None:
    producer = FakeProducer()
    transactions = Transactions(APP, "tierstream-x", timeout_s=0.05)
    transactions.producers[3] = producer

    async def send(given: Any) -> None:
        await asyncio.sleep(1)

    assert not asyncio.run(transactions.run(3, send, {}, lambda: True))
    assert producer.calls == [("begin",), ("abort",), ("stop",)]
    assert 3 not in transactions.producers and rebalances == [APP]


def test_a_failure_while_committing_stops_the_worker(rebalances: list) -> None:
    """Whether the commit holds is not known: no abort, no rebalance, raised."""
    producer = FakeProducer(fail={"commit": KafkaError("coordinator gone")})
    producer._txn_manager = SimpleNamespace(state=TransactionState.COMMITTING_TRANSACTION)
    with pytest.raises(KafkaError):
        run(producer)
    assert producer.calls[-2:] == [("commit",), ("stop",)] and not rebalances


def test_failures_in_a_row_end_in_one_raised(rebalances: list) -> None:
    transactions = Transactions(APP, "tierstream-x", timeout_s=5)

    async def send(given: Any) -> None:
        await given._call("send")

    def attempt(fail: dict[str, BaseException]) -> bool:
        transactions.producers[3] = FakeProducer(fail=fail)
        return asyncio.run(transactions.run(3, send, {}, lambda: True))

    broken = {"send": KafkaError("record too large")}
    assert [attempt(broken) for _ in range(MOST_FAILURES - 1)] == [False] * (MOST_FAILURES - 1)
    assert attempt({})  # a commit starts the count again
    assert [attempt(broken) for _ in range(MOST_FAILURES - 1)] == [False] * (MOST_FAILURES - 1)
    with pytest.raises(KafkaError):
        attempt(broken)


def test_any_other_failure_aborts_and_is_raised(rebalances: list) -> None:
    producer = FakeProducer(fail={"send": TypeError("a bug")})
    with pytest.raises(TypeError):
        run(producer)
    assert producer.calls[-1] == ("abort",) and not rebalances


def test_no_abort_without_an_open_transaction(rebalances: list) -> None:
    """A batch cancelled (the worker stopping) after its commit: nothing to abort."""
    producer = FakeProducer(fail={"send": asyncio.CancelledError()})
    producer._txn_manager = SimpleNamespace(state=TransactionState.READY)
    with pytest.raises(asyncio.CancelledError):
        run(producer)
    assert ("abort",) not in producer.calls
    producer = FakeProducer(fail={"send": asyncio.CancelledError()})
    producer._txn_manager = SimpleNamespace(state=TransactionState.IN_TRANSACTION)
    with pytest.raises(asyncio.CancelledError):
        run(producer)
    assert producer.calls[-1] == ("abort",)


def test_an_unassigned_partition_commits_nothing() -> None:
    transactions = Transactions(APP, "tierstream-x", timeout_s=5)

    async def send(given: Any) -> None:
        raise AssertionError("nothing is sent")

    assert not asyncio.run(transactions.run(0, send, {}, lambda: True))


def test_an_assignment_replaces_every_producer(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[FakeProducer] = []

    def producer(app: Any, transactional_id: str, timeout_s: float) -> FakeProducer:
        made.append(FakeProducer(transactional_id))
        return made[-1]

    monkeypatch.setattr(faust_fixes, "transactional_producer", producer)
    transactions = Transactions(APP, "tierstream-x", timeout_s=5)
    asyncio.run(transactions.assigned([2, 0, 2]))
    first = dict(transactions.producers)
    assert {p: f.transactional_id for p, f in first.items()} == \
        {0: "tierstream-x-tx-0", 2: "tierstream-x-tx-2"}
    asyncio.run(transactions.assigned([2]))
    assert all(f.calls == [("start",), ("stop",)] for f in first.values())
    assert transactions.producers[2] is made[-1] and list(transactions.producers) == [2]


def test_an_assignment_whose_producer_cannot_start_leaves_none_running(
        monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[FakeProducer] = []

    def producer(app: Any, transactional_id: str, timeout_s: float) -> FakeProducer:
        fail = {"start": KafkaError("no coordinator")} if transactional_id.endswith("-1") else {}
        made.append(FakeProducer(transactional_id, fail))
        return made[-1]

    monkeypatch.setattr(faust_fixes, "transactional_producer", producer)
    transactions = Transactions(APP, "tierstream-x", timeout_s=5)
    with pytest.raises(KafkaError):
        asyncio.run(transactions.assigned([0, 1]))
    assert all(("stop",) in f.calls for f in made) and not transactions.producers
