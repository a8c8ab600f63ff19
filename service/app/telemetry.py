"""Prometheus metrics and structured logging: what operators watch."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog
from prometheus_client import Counter, Gauge, Histogram

EVENTS = Counter(
    "ledger_events_total",
    "Records consumed, by what became of them.",
    ["outcome"],  # applied | duplicate | held | rejected
)
REJECTIONS = Counter(
    "ledger_rejections_total", "Records sent to the dead letter topic.", ["reason"]
)
SNAPSHOT_REVISIONS = Counter(
    "ledger_snapshot_revisions_total", "Snapshot revisions stored and published."
)
BATCH_SECONDS = Histogram(
    "ledger_batch_seconds",
    "Time to store and publish one consumed batch.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
# Where a batch's time goes: `wait` from the oldest record's Kafka timestamp to
# the batch's start, then `load`, `rules`, `write` and `commit` of its transaction,
# `publish` (outbox read and Kafka acknowledgements) and `ack` (the offsets commit).
BATCH_PHASE_SECONDS = Histogram(
    "ledger_batch_phase_seconds",
    "Time a batch spends in each phase, from its oldest record's timestamp to its commit.",
    ["phase"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
# Each MongoDB command the service sends (adapters.mongo_telemetry): which collection's
# writes a slow `write` phase spends its time in.
MONGODB_COMMAND_SECONDS = Histogram(
    "ledger_mongodb_command_seconds",
    "Time MongoDB took to answer each command, by command and collection.",
    ["command", "collection"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
BATCH_SIZE = Histogram(
    "ledger_batch_records", "Records per consumed batch.", buckets=(1, 10, 50, 100, 250, 500, 1000)
)
BATCH_FAILURES = Counter(
    "ledger_batch_failures_total", "Batches left uncommitted for redelivery, by cause.", ["cause"]
)
PUBLICATION_RETRIES = Counter(
    "ledger_publication_retries_total",
    "Sends of a committed batch's outbox entries that Kafka refused, retried in place.",
)
VIEW_RELOADS = Counter(
    "ledger_view_reloads_total", "Extra state loads a batch needed beyond its prefetch."
)
HELD_EXPIRED = Counter(
    "ledger_held_expired_total",
    "Events whose version never came within AUDIT_HOLD_SECONDS (orphan prevention incidents).",
)
HELD_PENDING = Gauge("ledger_held_events", "Events waiting for their version right now.")
HELD_OLDEST_AGE = Gauge(
    "ledger_held_oldest_age_seconds", "How long the oldest held event has waited (0: none)."
)
HOLD_LIMIT = Gauge(
    "ledger_audit_hold_limit_seconds",
    "AUDIT_HOLD_SECONDS: a held event older than this is dead-lettered (held_too_long).",
)
# Health (service/app/health.py): what the consumer has left and whether it moves.
CONSUMER_LAG = Gauge(
    "ledger_consumer_lag",
    "Records of an assigned input partition not yet consumed (end offset - position).",
    ["topic", "partition"],
)
ASSIGNED_PARTITIONS = Gauge(
    "ledger_consumer_assigned_partitions", "Input partitions assigned to this instance."
)
SECONDS_SINCE_PROGRESS = Gauge(
    "ledger_consumer_seconds_since_progress",
    "Seconds since a batch was last committed, or since there was nothing to consume.",
)
CONSUMER_STALLED = Gauge(
    "ledger_consumer_stalled", "1 while the progress watchdog fails liveness, else 0."
)
CAMPAIGNS_PURGED = Counter("ledger_campaigns_purged_total", "Campaigns purged after retention.")
SNAPSHOT_READ_SECONDS = Histogram(
    "ledger_snapshot_read_seconds",
    "Time to answer GET /campaigns/{id}/snapshot.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5),
)
VERSIONS_PER_CAMPAIGN = Histogram(
    "ledger_versions_per_campaign",
    "Versions per campaign, observed at each snapshot read.",
    buckets=(1, 5, 10, 50, 100, 500, 1000, 5000, 10000, 50000),
)
AUDIT_REPORTS_PER_CAMPAIGN = Histogram(
    "ledger_audit_reports_per_campaign",
    "Audit reports per campaign, observed at each snapshot read.",
    buckets=(0, 1, 5, 10, 50, 100, 500, 1000, 5000, 10000),
)
STREAM_CLIENTS = Gauge("ledger_stream_clients", "Server-Sent Event streams open now.")
STREAM_SKIPPED = Counter(
    "ledger_stream_skipped_total",
    "Revisions a slow stream client skipped, going straight to a newer one of the campaign.",
)
STREAM_REFUSED = Counter(
    "ledger_stream_refused_total", "Streams refused with 503 (limit reached or stopping)."
)
FEED_DELAY = Histogram(
    "ledger_feed_delay_seconds",
    "From a snapshot's publication (its Kafka record timestamp) to this instance's feed, "
    "which hands it to the open streams at once (the contract allows 1 s).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
SNAPSHOT_CACHE = Counter(
    "ledger_snapshot_cache_total",
    "Snapshot reads answered from the in-memory feed cache (hit) or MongoDB (miss).",
    ["result"],
)


def observe_snapshot(snapshot: dict[str, Any], seconds: float) -> None:
    SNAPSHOT_READ_SECONDS.observe(seconds)
    VERSIONS_PER_CAMPAIGN.observe(snapshot["counts"]["versions"])
    AUDIT_REPORTS_PER_CAMPAIGN.observe(snapshot["counts"]["audit_reports"])


def configure_logging(level: str, fmt: str) -> None:
    """structlog for our events and for the stdlib loggers of FastStream, aiokafka, uvicorn."""
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiokafka", "pymongo"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
