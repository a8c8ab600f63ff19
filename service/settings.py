"""Every knob of the service, read only from the environment (see the contract's Settings)."""

from __future__ import annotations

from functools import cached_property
from typing import Any, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    kafka_bootstrap_servers: str = "localhost:9092"
    kafka_group_id: str = "campaign-ledger"
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: str | None = None
    # How many records one handler call takes, at most. A backlog drains in big batches: the
    # campaign-level writes (snapshot, campaign, artifacts) are one per campaign per batch,
    # so they cost less per event the more events a batch holds (`make bench-compare`). A
    # batch is still split into transactions of at most 8 MiB of values (the processor).
    kafka_max_batch_records: int = Field(default=5000, ge=1)
    # How long the broker may hold a fetch that finds nothing new (Kafka's default). It
    # delays no record: a fetch covers every partition of its broker and is answered when
    # any of them has one (adapters.kafka.fetching.fetch_when_taken). Shorter only polls more.
    kafka_fetch_max_wait_ms: int = Field(default=500, ge=0)
    # How long one poll for a batch waits when nothing is buffered; it returns as soon as a
    # record is there (adapters.kafka.fetching.Prefetch), so this delays none.
    kafka_batch_timeout_ms: int = Field(default=100, ge=1)
    # How much the consumer fetches ahead while a batch runs (values and keys; at most
    # KAFKA_MAX_BATCH_RECORDS records too); the next batch takes all of it at once
    # (adapters.kafka.fetching.Prefetch). 0: fetch only when a batch takes the records.
    kafka_prefetch_bytes: int = Field(default=16 * 1024 * 1024, ge=0)
    # Partitions for topics this service creates when missing (inputs and outputs alike:
    # equal counts keep a campaign's events on one instance).
    kafka_topic_partitions: int = Field(default=6, ge=1)
    # Replication factor of the topics this service creates (3 on a production cluster).
    kafka_topic_replication_factor: int = Field(default=1, ge=1)
    # False on clusters whose topics a platform team makes: the service then never creates
    # or alters a topic, and refuses to start unless all six exist.
    kafka_create_topics: bool = True

    mongodb_uri: SecretStr = SecretStr("mongodb://localhost:27017")
    mongodb_database: str = "campaign_ledger"
    # MongoDB 8+: a batch of up to this many writes goes as one client-level bulkWrite (one
    # round trip); a larger one as one bulk write per collection. 0: always per collection.
    mongodb_one_command_max_writes: int = Field(default=64, ge=0)

    http_port: int = Field(default=8080, ge=0, le=65535)
    http_host: str = "0.0.0.0"  # noqa: S104 - a service listens on all interfaces in its pod
    api_tokens: SecretStr | None = None
    # Server-Sent Event streams (GET /stream, /campaigns/{id}/stream) one instance serves at
    # once; past it new ones get 503 with Retry-After.
    stream_max_clients: int = Field(default=2000, ge=0)
    # A comment line this often on an idle stream (the contract asks for at most 15 s).
    stream_keepalive_seconds: float = Field(default=10.0, gt=0, le=15)
    # Revisions of one campaign waiting for one slow client; past it the client skips its
    # oldest (snapshots are whole states). 1: a lagging client only ever gets the newest.
    stream_client_backlog: int = Field(default=16, ge=1, le=1000)
    # Recent snapshots kept in memory for GET snapshot and streams (0: read MongoDB each time).
    snapshot_cache_entries: int = Field(default=10_000, ge=0)
    # > 0: answer GET snapshot from memory without asking MongoDB while the cached entry is
    # this recent (it may then trail the topic by as much); 0: check the revision each time.
    snapshot_cache_seconds: float = Field(default=0.0, ge=0)

    # GET /analytics/iterations: an answer is reused this long per distinct query (0: never),
    # and the aggregation behind it is stopped by MongoDB after the second (maxTimeMS).
    analytics_cache_seconds: float = Field(default=30.0, ge=0)
    analytics_max_seconds: float = Field(default=300.0, gt=0)

    max_event_bytes: int = Field(default=1024 * 1024, ge=1)
    # Contract 1.1: `every` publishes each revision; `latest` only the newest revision a batch
    # makes per campaign (revisions still count every change).
    snapshot_publication: Literal["every", "latest"] = "every"
    # A batch's publication runs beside the next batch's transaction (never before it where
    # they share a campaign), a failed send retried in place; false: each batch publishes
    # before the next begins, and a failed send fails the batch.
    snapshot_publish_behind: bool = True
    audit_hold_seconds: float = Field(default=3600, gt=0)
    campaign_retention_days: float = Field(default=30, ge=0)
    # How often held events, the snapshot outbox and retention are swept.
    maintenance_interval_seconds: float = Field(default=5.0, gt=0)

    # Health (service/app/health.py). /healthz, /readyz and /metrics on their own port, which
    # no Service exposes (k8s/: 9090); unset, they are served on HTTP_PORT beside the API.
    management_port: int | None = Field(default=None, ge=0, le=65535)
    # Liveness fails when assigned partitions have lag (or a batch is in flight) and nothing
    # was committed for this long. Above the longest retry pause (30 s) and batch.
    watchdog_stall_seconds: float = Field(default=300.0, gt=0)
    # How often consumer lag (ledger_consumer_lag) is measured for the metric and watchdog.
    consumer_lag_interval_seconds: float = Field(default=5.0, gt=0)
    # /readyz runs its checks concurrently and answers within this (keep it below the
    # readiness probe's timeoutSeconds), reusing an answer for readiness_cache_seconds.
    readiness_timeout_seconds: float = Field(default=2.0, gt=0)
    readiness_cache_seconds: float = Field(default=1.0, ge=0)
    # The shutdown budget: open HTTP connections drain for at most the first, then the
    # consumer finishes its batch in flight for at most the second. k8s/'s
    # terminationGracePeriodSeconds exceeds preStop + both (tests/unit/test_shutdown_budget.py).
    http_shutdown_timeout_seconds: float = Field(default=15.0, gt=0)
    kafka_shutdown_timeout_seconds: float = Field(default=20.0, gt=0)

    topic_artifact_generated: str = "campaign.artifact-generated"
    topic_audit_completed: str = "campaign.audit-completed"
    topic_feedback: str = "campaign.feedback"
    topic_lifecycle: str = "campaign.lifecycle"
    topic_snapshot_updated: str = "campaign.snapshot-updated"
    topic_dead_letter: str = "campaign.dead-letter"

    log_level: str = "INFO"
    log_format: Literal["json", "console"] = "json"

    @classmethod
    def defaults(cls) -> Settings:
        """The settings with nothing read from the environment (for generated documents)."""

        class _Defaults(cls):  # type: ignore[valid-type,misc]
            @classmethod
            def settings_customise_sources(
                cls, settings_cls: Any, init_settings: Any, *args: Any, **kwargs: Any
            ) -> tuple[Any, ...]:
                return (init_settings,)

        return _Defaults()

    @property
    def kafka_servers(self) -> list[str]:
        """KAFKA_BOOTSTRAP_SERVERS as a list ("a:9092,b:9092" is two brokers)."""
        return [a.strip() for a in self.kafka_bootstrap_servers.split(",") if a.strip()]

    @property
    def input_topics(self) -> tuple[str, ...]:
        return (
            self.topic_artifact_generated,
            self.topic_audit_completed,
            self.topic_feedback,
            self.topic_lifecycle,
        )

    @cached_property
    def tokens(self) -> tuple[str, ...]:
        if self.api_tokens is None:
            return ()
        raw = self.api_tokens.get_secret_value()
        return tuple(t.strip() for t in raw.split(",") if t.strip())

    @property
    def retention_seconds(self) -> float:
        return self.campaign_retention_days * 86400
