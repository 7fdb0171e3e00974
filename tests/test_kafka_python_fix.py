"""tests/kafka_python_fix.py: a transport closed with a write buffered, then its client's
network loop closed, leaves its socket open in kafka-python; with the fix it is closed."""

import socket
from collections.abc import Iterator

import pytest
from kafka.net.selector import NetworkSelector
from kafka.net.transport import KafkaTCPTransport

from tests import kafka_python_fix


def closed_with_a_write_buffered() -> tuple[socket.socket, socket.socket]:
    ours, peer = socket.socketpair()
    ours.setblocking(False)
    net = NetworkSelector()
    transport = KafkaTCPTransport(net, ours)
    transport.write(b"a request")
    transport.close()  # deferred to the write task: a write is buffered
    net.close()  # as a client's close() does: cancels that task
    return ours, peer


@pytest.fixture
def unfixed() -> Iterator[None]:
    kafka_python_fix.undo()
    yield
    kafka_python_fix.apply()


def test_the_fix_closes_the_socket() -> None:
    ours, peer = closed_with_a_write_buffered()
    peer.close()
    assert ours.fileno() == -1


def test_without_it_kafka_python_leaves_the_socket_open(unfixed: None) -> None:
    """Fails once kafka-python closes the socket itself: then the fix can go."""
    ours, peer = closed_with_a_write_buffered()
    try:
        assert ours.fileno() != -1
    finally:
        ours.close()
        peer.close()
