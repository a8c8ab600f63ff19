"""The composition root: the one place that builds and wires every part."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import structlog
from fastapi import FastAPI
from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI

from service.adapters.kafka import KafkaPublisher, build_broker, ensure_topics
from service.adapters.mongo_store import MongoStore
from service.api.consumer import register_consumer
from service.api.http import Health, build_api
from service.app.maintenance import Maintenance
from service.app.processor import BatchProcessor
from service.settings import Settings

log = structlog.get_logger(__name__)


@dataclass
class Service:
    settings: Settings
    store: MongoStore
    broker: KafkaBroker
    processor: BatchProcessor
    maintenance: Maintenance
    health: Health
    app: FastAPI

    def asyncapi(self) -> dict[str, Any]:
        spec = AsyncAPI(
            self.broker,
            title="campaign-ledger",
            version="0.1.0",
            description="Events read and written by campaign-ledger (CloudEvents 1.0, "
            "structured mode, keyed by campaign id).",
            schema_version="3.0.0",
        )
        document: dict[str, Any] = spec.to_specification().to_jsonable()
        return document


def build(settings: Settings | None = None) -> Service:
    settings = settings or Settings()
    store = MongoStore.connect(settings.mongodb_uri.get_secret_value(), settings.mongodb_database)
    broker = build_broker(settings)
    publisher = KafkaPublisher(broker, settings)
    processor = BatchProcessor(store, publisher, max_event_bytes=settings.max_event_bytes)
    register_consumer(broker, settings, processor)
    maintenance = Maintenance(
        store,
        publisher,
        hold_seconds=settings.audit_hold_seconds,
        retention_seconds=settings.retention_seconds,
    )

    async def kafka_ping() -> bool:
        return await broker.ping(timeout=2.0)

    health = Health(store, kafka_ping)
    service: Service

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await store.ensure_schema()
        await broker.start()
        await ensure_topics(broker, settings)
        health.started = True
        sweeper = asyncio.create_task(
            maintenance.run_forever(settings.maintenance_interval_seconds)
        )
        log.info("service_started", topics=list(settings.input_topics))
        try:
            yield
        finally:
            # Readiness turns false first, so traffic drains before the consumer stops.
            health.stopping = True
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
            await broker.stop()  # waits for the batch in flight (graceful_timeout)
            await store.close()
            log.info("service_stopped")

    def asyncapi() -> dict[str, Any]:
        return service.asyncapi()

    app = build_api(store, health, settings.tokens, asyncapi, lifespan=lifespan)
    service = Service(settings, store, broker, processor, maintenance, health, app)
    return service
