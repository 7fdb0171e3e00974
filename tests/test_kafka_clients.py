"""streams/kafka/clients.py: a refused login is named instead of kafka-python's bootstrap
timeout (the wrong-password case in tests/integration/test_security.py runs it for real)."""

import logging

import pytest
from kafka.errors import IncompatibleBrokerVersion, KafkaTimeoutError, SaslAuthenticationFailedError

from streams.kafka.clients import refusals_named

REFUSED = SaslAuthenticationFailedError("invalid credentials with SASL mechanism SCRAM-SHA-256")


def bootstrap_log(*args: object) -> None:
    """What kafka-python logs while it retries a refused login (kafka/net/manager.py)."""
    logging.getLogger("kafka.net.manager").warning(
        "Bootstrap connection to %s failed: %s (backoff %.2f secs)", *args)


def test_a_timeout_after_a_refused_login_is_the_refusal() -> None:
    with pytest.raises(SaslAuthenticationFailedError) as raised, refusals_named():
        bootstrap_log("bootstrap-0", REFUSED, 0.05)
        raise KafkaTimeoutError("Unable to bootstrap from k:9092")
    assert raised.value is REFUSED


def test_a_timeout_with_no_refusal_stays_a_timeout() -> None:
    with pytest.raises(KafkaTimeoutError), refusals_named():
        bootstrap_log("bootstrap-0", ConnectionRefusedError(111, "refused"), 0.05)
        raise KafkaTimeoutError("Unable to bootstrap from k:9092")


def test_other_errors_pass_and_the_handler_goes() -> None:
    kafka = logging.getLogger("kafka")
    handlers = list(kafka.handlers)
    with pytest.raises(IncompatibleBrokerVersion), refusals_named():
        bootstrap_log("bootstrap-0", REFUSED, 0.05)
        raise IncompatibleBrokerVersion("no metadata support")
    assert kafka.handlers == handlers
