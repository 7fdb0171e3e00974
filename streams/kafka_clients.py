"""Connection settings for every Kafka client tierstream makes, from the one settings object."""

from __future__ import annotations

import ssl
from typing import Any

from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from models.errors import ConnectError
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
    try:
        return KafkaAdminClient(client_id=f"{settings.app_id}-admin",
                                request_timeout_ms=15_000, **kafka_python_config(settings))
    except KafkaError as error:
        who = f" as {settings.kafka_username!r}" if settings.kafka_username else ""
        raise ConnectError(
            f"cannot use Kafka at {settings.bootstrap_servers}{who} "
            f"({settings.kafka_security_protocol}): {type(error).__name__}: {error}") from None
