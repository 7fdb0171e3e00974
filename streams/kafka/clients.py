"""Connection settings for every Kafka client tierstream makes, from the one settings object."""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import (
    KafkaError,
    KafkaTimeoutError,
    SaslAuthenticationFailedError,
    UnsupportedSaslMechanismError,
)

from models.errors import ConnectError, RebuildError
from streams.settings import Settings


def kafka_python_config(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for kafka-python clients (admin, producer, consumer)."""
    config: dict[str, Any] = {"bootstrap_servers": settings.bootstrap_servers,
                              "security_protocol": settings.kafka_security_protocol}
    if settings.kafka_security_protocol.startswith("SASL"):
        config.update(sasl_mechanism=settings.kafka_sasl_mechanism,
                      sasl_plain_username=settings.kafka_username,
                      sasl_plain_password=_password(settings))
    if settings.kafka_ssl_cafile is not None:
        config["ssl_cafile"] = str(settings.kafka_ssl_cafile)
    return config


def faust_credentials(settings: Settings) -> Any:
    """faust's `broker_credentials` for the configured security protocol, or None."""
    import faust

    protocol = settings.kafka_security_protocol
    context = None
    if protocol.endswith("SSL"):
        context = ssl.create_default_context(
            cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None)
    if protocol.startswith("SASL"):
        return faust.SASLCredentials(username=settings.kafka_username,
                                     password=_password(settings),
                                     mechanism=settings.kafka_sasl_mechanism,
                                     ssl_context=context)
    return faust.SSLCredentials(context) if context is not None else None


def _password(settings: Settings) -> str | None:
    return settings.kafka_password.get_secret_value() if settings.kafka_password else None


def admin(settings: Settings) -> KafkaAdminClient:
    """An admin client, or ConnectError saying why there is none (never the password)."""
    with connecting(settings):
        return KafkaAdminClient(client_id=f"{settings.app_id}-admin",
                                request_timeout_ms=15_000, **kafka_python_config(settings))


@contextmanager
def connecting(settings: Settings) -> Iterator[None]:
    """Around the start of a kafka-python client of `settings`: a KafkaError becomes
    ConnectError saying where, as whom and why (a refused login named, `refusals_named`),
    never with the password."""
    try:
        with refusals_named():
            yield
    except KafkaError as error:
        who = f" as {settings.kafka_username!r}" if settings.kafka_username else ""
        raise ConnectError(f"cannot use Kafka at {settings.bootstrap_servers}{who} "
                           f"({settings.kafka_security_protocol}): {error}") from None


def committed_reader(config: Mapping[str, Any], **options: Any) -> KafkaConsumer:
    """A consumer in no group, committing nothing, that sees committed records only (what
    exactly-once workers wrote, without their aborted transactions); `config` is
    kafka_python_config's."""
    with refusals_named():
        return KafkaConsumer(**config, group_id=None, enable_auto_commit=False,
                             isolation_level="read_committed", **options)


@contextmanager
def refusals_named() -> Iterator[None]:
    """While a kafka-python client bootstraps: its timeout becomes the refused login it logged
    meanwhile, if any. It retries a wrong password or SASL mechanism until its bootstrap
    timeout and then reports only "Unable to bootstrap". Best effort: it sees what reaches the
    "kafka" loggers at WARNING or above, as kafka-python logs a refusal by default."""
    refused = _Refusal()
    logger = logging.getLogger("kafka")
    logger.addHandler(refused)
    try:
        yield
    except KafkaTimeoutError:
        if refused.error is None:
            raise
        raise refused.error from None
    finally:
        logger.removeHandler(refused)


class _Refusal(logging.Handler):
    """Keeps the first refused login in the records it is handed."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.error: KafkaError | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.error is None and isinstance(record.args, tuple):
            self.error = next((arg for arg in record.args if isinstance(
                arg, SaslAuthenticationFailedError | UnsupportedSaslMechanismError)), None)


def assign_from_beginning(consumer: KafkaConsumer, topic: str,
                          servers: str) -> dict[TopicPartition, int]:
    """Assign every partition of the topic from its beginning; returns the end offsets."""
    partitions = consumer.partitions_for_topic(topic)
    if not partitions:
        raise RebuildError(f"topic {topic!r} not found on {servers}: nothing to read")
    tps = [TopicPartition(topic, p) for p in sorted(partitions)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    return consumer.end_offsets(tps)


def read_to_end(consumer: KafkaConsumer, ends: dict[TopicPartition, int],
                idle_timeout_s: float) -> Iterator[Any]:
    """Every record up to the end offsets (a compacted log has gaps: positions tell the end)."""
    last_progress = time.monotonic()
    while pending := [tp for tp, end in ends.items() if consumer.position(tp) < end]:
        polled = consumer.poll(timeout_ms=500)
        if polled:
            last_progress = time.monotonic()
        elif time.monotonic() - last_progress > idle_timeout_s:
            raise RebuildError(f"no records for {idle_timeout_s}s from {pending} before their "
                               f"end offsets; is the broker reachable?")
        for records in polled.values():
            yield from records
