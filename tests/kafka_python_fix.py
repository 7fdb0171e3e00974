"""Two fixes of kafka-python 3.0.12 for the test process, whose warnings are errors.

1. A transport closed while a write is still buffered defers closing its socket to its write task
(`KafkaTCPTransport.close`); a client's `close()` then stops its network loop and cancels that
task, and the cancelled task ends without closing the socket (`_write_to_sock` closes it only
after its loop, not in its `finally`). The socket is dropped open and, in a reference cycle,
collected at some later moment of some later test: an unclosed-socket `ResourceWarning` that
pytest turns into that test's failure. Whether a write is buffered at the moment a harness
client closes is timing, so the failure comes and goes. `tests/test_kafka_python_fix.py`
shows the fault with the fix undone and the fix closing the socket.

2. A connection refused (a broker of a cluster down: the three-broker fault cases) leaves the
socket `KafkaNetSocket.connect` made open: `sock_connect` raises and nothing closes it. The fix
closes it when connecting fails (tests/test_kafka_python_fix.py, the same way).
"""

from __future__ import annotations

from typing import Any

from kafka.net.inet import KafkaNetSocket
from kafka.net.transport import KafkaTCPTransport

_write_to_sock = KafkaTCPTransport._write_to_sock
_connect = KafkaNetSocket.connect


async def _write_to_sock_closing_when_cancelled(self: KafkaTCPTransport) -> Any:
    try:
        return await _write_to_sock(self)
    except GeneratorExit:  # the task is cancelled: a close() waiting for it would never come
        if self._closed:
            self._write_task = None  # being closed right now: _close() must not cancel it again
            self._close()
        raise


async def _connect_closing_on_failure(self: KafkaNetSocket, net: Any, addrinfo: tuple,
                                      socket_options: Any = (), timeout_at: Any = None) -> Any:
    family, sock_type, proto, _canonname, sockaddr = addrinfo
    sock = self.socket(family, sock_type, proto)
    try:
        sock.setblocking(False)
        for option in socket_options:
            sock.setsockopt(*option)
        return await self.sock_connect(net, sock, sockaddr, timeout_at=timeout_at)
    except BaseException:
        sock.close()
        raise


def apply() -> None:
    KafkaTCPTransport._write_to_sock = _write_to_sock_closing_when_cancelled
    KafkaNetSocket.connect = _connect_closing_on_failure


def undo() -> None:
    KafkaTCPTransport._write_to_sock = _write_to_sock
    KafkaNetSocket.connect = _connect
