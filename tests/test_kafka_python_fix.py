"""tests/kafka_python_fix.py: a transport closed with a write buffered, then its client's
network loop closed, and a connection refused, each leave a socket open in kafka-python; with
the fixes they are closed."""

import socket
from collections.abc import Iterator

import pytest
from kafka.errors import KafkaConnectionError
from kafka.net.inet import KafkaNetSocket
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


def refused() -> socket.socket:
    """The socket of a connect to a port nobody listens on."""
    with socket.socket() as probe:  # a free port, closed again
        probe.bind(("127.0.0.1", 0))
        address = probe.getsockname()
    net, factory, made = NetworkSelector(), KafkaNetSocket(), []
    make = factory.socket
    factory.socket = lambda *args: made.append(make(*args)) or made[-1]  # keep it to look at
    try:
        with pytest.raises(KafkaConnectionError):
            net.run(factory.connect, net, (socket.AF_INET, socket.SOCK_STREAM,
                                         socket.IPPROTO_TCP, "", address))
    finally:
        net.close()
    return made[0]


def test_the_fix_closes_a_refused_connections_socket() -> None:
    assert refused().fileno() == -1


def test_without_it_a_refused_connection_leaves_its_socket_open(unfixed: None) -> None:
    """Fails once kafka-python closes the socket itself: then the fix can go."""
    sock = refused()
    try:
        assert sock.fileno() != -1
    finally:
        sock.close()
