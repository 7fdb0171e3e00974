"""The worker's store port: the table, with the states of batches decided but not stored yet in
front of it."""

from __future__ import annotations

from types import SimpleNamespace

from models import stored
from models.state import CustomerState
from streams.worker.runtime import TableStore


def state(customer: str, sequence: int) -> CustomerState:
    return CustomerState(customer_id=customer, created_at=1, clock=1, sequence=sequence)


def test_a_decided_batch_is_read_before_the_table_and_forgotten_once_written() -> None:
    table = {"a": stored.encode(0, state("a", 1)), "b": stored.encode(0, state("b", 1))}
    store = TableStore(SimpleNamespace(data=table))  # a faust table's local store
    first = {"a": state("a", 2), "b": None}  # b erased
    store.decided(first)
    assert store.get("a") == state("a", 2) and store.get("b") is None
    assert store.stored("a") == state("a", 1) and store.stored("b") == state("b", 1)
    second = {"a": state("a", 3)}  # the next batch changed a again before the first is stored
    store.decided(second)
    table["a"] = stored.encode(0, first["a"])
    del table["b"]
    store.written(first)
    assert store.get("a") == state("a", 3), "a later batch's state stays in front"
    assert store.get("b") is None and "b" not in store.pending
    table["a"] = stored.encode(0, second["a"])
    store.written(second)
    assert store.pending == {} and store.get("a") == state("a", 3)
