"""A fix of kafka-python 3.0.12 for the test process, whose warnings are errors.

A transport closed while a write is still buffered defers closing its socket to its write task
(`KafkaTCPTransport.close`); a client's `close()` then stops its network loop and cancels that
task, and the cancelled task ends without closing the socket (`_write_to_sock` closes it only
after its loop, not in its `finally`). The socket is dropped open and, in a reference cycle,
collected at some later moment of some later test: an unclosed-socket `ResourceWarning` that
pytest turns into that test's failure. Whether a write is buffered at the moment a harness
client closes is timing, so the failure comes and goes. `tests/test_kafka_python_fix.py`
shows the fault with the fix undone and the fix closing the socket.
"""

from __future__ import annotations

from typing import Any

from kafka.net.transport import KafkaTCPTransport

_write_to_sock = KafkaTCPTransport._write_to_sock


async def _write_to_sock_closing_when_cancelled(self: KafkaTCPTransport) -> Any:
    try:
        return await _write_to_sock(self)
    except GeneratorExit:  # the task is cancelled: a close() waiting for it would never come
        if self._closed:
            self._write_task = None  # being closed right now: _close() must not cancel it again
            self._close()
        raise


def apply() -> None:
    KafkaTCPTransport._write_to_sock = _write_to_sock_closing_when_cancelled


def undo() -> None:
    KafkaTCPTransport._write_to_sock = _write_to_sock
