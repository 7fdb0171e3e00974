"""All runtime settings in one frozen object, read from the environment once at the entry point.

Every variable is prefixed `TIERSTREAM_` (e.g. `TIERSTREAM_POLICY=rules/policies/default.yaml`),
except the bootstrap servers, which also answer to the conventional `KAFKA_BOOTSTRAP_SERVERS`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from models.outputs import DEFAULT_TYPE_PREFIX, TYPE_PREFIX_PATTERN

TABLE_NAME = "customers"


class Topics(BaseSettings):
    """Topic names; input topics must be keyed by customer id and share one partition count."""

    model_config = SettingsConfigDict(env_prefix="TIERSTREAM_TOPIC_", frozen=True)

    orders: str = "orders"
    interactions: str = "interactions"
    ticks: str = "tierstream-ticks"
    tier_changes: str = "tier-changes"
    churn_warnings: str = "churn-warnings"
    customer_tiers: str = "customer-tiers"
    dead_letters: str = "dead-letters"
    population: str = "tierstream-population"

    @property
    def inputs(self) -> tuple[str, str]:
        return self.orders, self.interactions


class Settings(BaseSettings):
    """What a worker, the topic tool and the other commands need to know."""

    model_config = SettingsConfigDict(env_prefix="TIERSTREAM_", frozen=True, extra="ignore",
                                      populate_by_name=True)

    bootstrap_servers: str = Field(
        default="127.0.0.1:9092",
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "TIERSTREAM_BOOTSTRAP_SERVERS"))
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = \
        "PLAINTEXT"
    kafka_sasl_mechanism: Literal["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"] = "SCRAM-SHA-256"
    kafka_username: str | None = None
    kafka_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None               # CA bundle for SSL / SASL_SSL
    app_id: str = "tierstream"
    policy: str = "default"
    partitions: int = Field(default=8, ge=1)
    replication: int = Field(default=1, ge=1)
    store: str = "memory://"                      # or rocksdb:// for state larger than memory
    data_dir: Path = Path(".tierstream-data")
    tick_interval_s: float = Field(default=1.0, gt=0)
    idle_after_s: float = Field(default=30.0, gt=0)   # a quiet partition follows the wall clock
    lateness_s: float = Field(default=0.0, ge=0)       # time-driven work waits this much longer
    max_future_s: float = Field(default=86_400.0, ge=0)  # events further ahead are rejected
    sketch_k: int = Field(default=4000, ge=8, le=65_535)  # population sketches, relative metrics
    web_host: str = "127.0.0.1"                       # 0.0.0.0 in containers
    web_port: int = Field(default=6066, ge=1, le=65535)
    canonical_url: str | None = None                  # how other workers reach this one
    api_token: SecretStr | None = None                # bearer token for /customers (optional)
    redis_url: SecretStr | None = None                # redis://[:password@]host:port/db, rediss://
    redis_prefix: str = "tierstream:v1"
    # outputs on Kafka: the JSON envelope as the value, or ce_* headers and `data` as the value
    cloudevents_mode: Literal["structured", "binary"] = "structured"
    # outputs' `type` is <prefix>.<kind>; `tierstream` gives the names before format 2
    event_type_prefix: str = Field(default=DEFAULT_TYPE_PREFIX, pattern=TYPE_PREFIX_PATTERN)
    # `tierstream ingest`, the HTTP ingress (streams/ingest/)
    ingest_host: str = "127.0.0.1"                    # 0.0.0.0 in containers
    ingest_port: int = Field(default=6070, ge=1, le=65535)
    ingest_token: SecretStr | None = None             # bearer token for POST /events
    ingest_max_pending: int = Field(default=20_000, ge=1)  # events awaiting Kafka, then 503
    segment_write_key: SecretStr | None = None        # Segment's HTTP API: basic auth user
    shopify_secret: SecretStr | None = None           # Shopify webhooks: the HMAC key
    # exactly_once: each partition's part of a batch commits in one Kafka transaction
    processing_guarantee: Literal["at_least_once", "exactly_once"] = "at_least_once"
    transaction_timeout_s: float = Field(default=60.0, gt=0)  # an abandoned one is aborted then
    topics: Topics = Field(default_factory=Topics)

    @property
    def changelog_topic(self) -> str:
        """faust's name for the changelog of the worker's `customers` table."""
        return f"{self.app_id}-{TABLE_NAME}-changelog"

    @property
    def web_url(self) -> str:
        return self.canonical_url or f"http://{self.web_host}:{self.web_port}"
