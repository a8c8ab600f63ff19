"""The composition root: the one place that builds and wires every part."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

import structlog
from fastapi import FastAPI
from faststream.kafka import KafkaBroker

from service.adapters import otel
from service.adapters.kafka.broker import build_broker
from service.adapters.kafka.consumer import CommitBehind, register_consumer
from service.adapters.kafka.fetching import Prefetch
from service.adapters.kafka.follower import OutputTopicsFollower
from service.adapters.kafka.publisher import KafkaPublisher
from service.adapters.kafka.topics import ensure_topics
from service.adapters.mongo_maintenance import MongoMaintenance
from service.adapters.mongo_reads import MongoReads
from service.adapters.mongo_store import MongoStore
from service.adapters.mongo_telemetry import CommandTimer
from service.api.http import build_api
from service.api.management import management_app, split_ports
from service.app import telemetry
from service.app.health import Health, LagMonitor, Watchdog
from service.app.maintenance import Maintenance
from service.app.processor import BatchProcessor
from service.app.streams import RecentDeadLetters, SnapshotFeed, SnapshotReader
from service.schemas import asyncapi_document
from service.settings import Settings

log = structlog.get_logger(__name__)

# `campaign-ledger serve --role`: consumer = the Kafka consumer group and maintenance (HTTP:
# health and metrics only); api = the HTTP API (no group membership); all = both.
Role = Literal["all", "consumer", "api"]


@dataclass
class Service:
    settings: Settings
    store: MongoStore
    broker: KafkaBroker
    processor: BatchProcessor
    maintenance: Maintenance
    health: Health
    app: FastAPI
    feed: SnapshotFeed
    role: Role = "all"
    watchdog: Watchdog | None = None
    lag: LagMonitor | None = None

    def begin_stop(self) -> None:
        """First thing on SIGTERM: readiness off, open streams ended (they would otherwise
        hold the server's graceful shutdown until its timeout)."""
        self.health.stopping = True
        self.feed.close()

    def asyncapi(self) -> dict[str, Any]:
        return asyncapi_document(self.settings)


def _health(
    settings: Settings, store: MongoStore, broker: KafkaBroker, watchdog: Watchdog | None
) -> Health:
    """Readiness asks what the role needs: a consumer (it has a watchdog) MongoDB and Kafka;
    the API MongoDB only (its live streams degrade without Kafka, its reads do not)."""

    async def kafka_ping() -> bool:
        return await broker.ping(timeout=settings.readiness_timeout_seconds)

    checks = {"mongodb": store.ping}
    if watchdog is not None:
        checks["kafka"] = kafka_ping
    return Health(
        checks,
        gate="serving" if watchdog is None else "consuming",
        timeout=settings.readiness_timeout_seconds,
        cache_seconds=settings.readiness_cache_seconds,
        watchdog=watchdog,
    )


def _subscribe(
    broker: KafkaBroker,
    settings: Settings,
    processor: BatchProcessor,
    commits: CommitBehind,
    prefetch: Prefetch,
) -> LagMonitor:
    """Join the consumer group (on broker.start()); the lag of what it is assigned is watched."""
    subscriber = register_consumer(broker, settings, processor, commits, prefetch)
    return LagMonitor(
        lambda: subscriber.consumer, commits.watchdog, fetched_ahead=prefetch.first_held
    )


def _start_background(
    settings: Settings, maintenance: Maintenance, lag: LagMonitor | None
) -> list[asyncio.Task[None]]:
    """The consumer role's periodic duties: maintenance sweeps and lag measurement."""
    telemetry.HOLD_LIMIT.set(settings.audit_hold_seconds)
    tasks = [asyncio.create_task(maintenance.run_forever(settings.maintenance_interval_seconds))]
    if lag is not None:
        tasks.append(asyncio.create_task(lag.run_forever(settings.consumer_lag_interval_seconds)))
    return tasks


async def _stop_background(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _prepare_consuming(
    settings: Settings, store: MongoStore, broker: KafkaBroker, publisher: KafkaPublisher
) -> None:
    await store.ensure_schema()
    await broker.connect()
    await ensure_topics(broker, settings)  # before any consumer asks for the topics
    await publisher.start()


async def _stop_consuming(
    broker: KafkaBroker,
    commits: CommitBehind,
    prefetch: Prefetch,
    processor: BatchProcessor,
    publisher: KafkaPublisher,
) -> None:
    """The last batch's offsets and published mark land before the group is left (a
    publication that Kafka keeps refusing is given up: its batch is redelivered)."""
    processor.give_up_retrying()
    await commits.drain()
    await broker.stop()  # waits for the batch in flight (graceful_timeout)
    await prefetch.stop()  # what it fetched ahead is not processed: the commits say so
    await processor.flush()
    await publisher.stop()


def build(settings: Settings | None = None, role: Role = "all") -> Service:
    settings = settings or Settings()
    consumes = role in ("all", "consumer")
    serves_api = role in ("all", "api")
    store = MongoStore.connect(
        settings.mongodb_uri.get_secret_value(),
        settings.mongodb_database,
        one_command_max_writes=settings.mongodb_one_command_max_writes,
        event_listeners=[CommandTimer(telemetry.MONGODB_COMMAND_SECONDS)],
    )
    broker = build_broker(settings)
    publisher = KafkaPublisher(settings)
    processor = BatchProcessor(
        store,
        publisher,
        max_event_bytes=settings.max_event_bytes,
        publication=settings.snapshot_publication,
        publish_behind=settings.snapshot_publish_behind,
    )
    watchdog = Watchdog(settings.watchdog_stall_seconds)
    commits, prefetch = CommitBehind(watchdog), Prefetch.from_settings(settings)
    lag = _subscribe(broker, settings, processor, commits, prefetch) if consumes else None
    maintenance = Maintenance(
        MongoMaintenance(store),
        publisher,
        hold_seconds=settings.audit_hold_seconds,
        retention_seconds=settings.retention_seconds,
    )

    health = _health(settings, store, broker, watchdog if consumes else None)
    feed = SnapshotFeed(
        max_streams=settings.stream_max_clients,
        cache_entries=settings.snapshot_cache_entries,
        cache_seconds=settings.snapshot_cache_seconds,
        backlog=settings.stream_client_backlog,
    )
    dead_letters = RecentDeadLetters()
    follower = OutputTopicsFollower(settings, feed, dead_letters)
    reads = MongoReads(store.db)
    service: Service

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        tasks: list[asyncio.Task[None]] = []
        if consumes:
            await _prepare_consuming(settings, store, broker, publisher)
        if serves_api:
            await follower.start()
        if consumes:
            await broker.start()
            tasks = _start_background(settings, maintenance, lag)
        health.started = True
        log.info("service_started", role=role, topics=list(settings.input_topics))
        try:
            yield
        finally:
            # Readiness turns false first, so traffic drains before the consumer stops.
            health.stopping = True
            feed.close()
            if serves_api:
                await follower.stop()
            await _stop_background(tasks)
            if consumes:
                await _stop_consuming(broker, commits, prefetch, processor, publisher)
            await store.close()
            await otel.shutdown(tracer_provider)
            log.info("service_stopped")

    def asyncapi() -> dict[str, Any]:
        return service.asyncapi()

    if not serves_api:
        app = management_app(health, lifespan=lifespan)
    else:
        app = build_api(
            reads,
            health,
            settings.tokens,
            asyncapi,
            feed=feed,
            reader=SnapshotReader(feed, reads),
            recent_dead_letters=dead_letters,
            keepalive_seconds=settings.stream_keepalive_seconds,
            analytics_cache_seconds=settings.analytics_cache_seconds,
            analytics_max_seconds=settings.analytics_max_seconds,
            lifespan=lifespan,
        )
    tracer_provider = otel.configure(app)  # from the OTEL_* variables; None: tracing off
    split_ports(app, settings.http_port, settings.management_port)
    service = Service(
        settings, store, broker, processor, maintenance, health, app, feed, role, watchdog, lag
    )
    return service
