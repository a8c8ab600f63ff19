"""Runs the real service in-process against real Kafka and MongoDB, isolated per test.

Each `Ledger` gets its own topics, consumer group and database, so tests never see each
other's data; it talks to the service only as other teams do: events into Kafka, snapshots
and dead letters out of Kafka, reads over HTTP, and (for assertions) documents in MongoDB.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from pymongo import AsyncMongoClient

from service.bootstrap import Service, build
from service.settings import Settings

TOPIC_KINDS = {
    "artifact": "topic_artifact_generated",
    "audit": "topic_audit_completed",
    "feedback": "topic_feedback",
    "lifecycle": "topic_lifecycle",
    "snapshot": "topic_snapshot_updated",
    "dead_letter": "topic_dead_letter",
}
TOPIC_OF_TYPE = {
    "campaign.artifact.generated": "artifact",
    "campaign.audit.completed": "audit",
    "campaign.feedback.submitted": "feedback",
}


def isolated_settings(kafka: str, mongo: str, **overrides: Any) -> Settings:
    tag = uuid.uuid4().hex[:10]
    values: dict[str, Any] = {
        "kafka_bootstrap_servers": kafka,
        "kafka_group_id": f"ledger-test-{tag}",
        "mongodb_uri": mongo,
        "mongodb_database": f"ledger_test_{tag}",
        "kafka_topic_partitions": 3,
        "maintenance_interval_seconds": 0.5,
        "log_format": "console",
    }
    for kind, attribute in TOPIC_KINDS.items():
        values[attribute] = f"t-{tag}.{kind}"
    values.update(overrides)
    return Settings(**values)


def new_id(prefix: str) -> str:
    """A fresh id, so no two tests ever share a campaign, artifact or run."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def eventually(
    check: Callable[[], Awaitable[Any]], timeout: float = 30.0, interval: float = 0.1
) -> Any:
    """Poll `check` until it returns something truthy; fail with its last value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s; last value: {last!r}")


@dataclass
class TopicReader:
    """Everything published to one topic since the test began, decoded."""

    consumer: AIOKafkaConsumer
    messages: list[dict[str, Any]] = field(default_factory=list)
    keys: list[bytes | None] = field(default_factory=list)
    headers: list[dict[str, bytes]] = field(default_factory=list)

    async def poll(self) -> list[dict[str, Any]]:
        batches = await self.consumer.getmany(timeout_ms=50)
        for records in batches.values():
            for record in records:
                self.messages.append(orjson.loads(record.value))
                self.keys.append(record.key)
                self.headers.append(dict(record.headers))
        return self.messages


class Ledger:
    def __init__(self, service: Service, client: httpx.AsyncClient, producer: AIOKafkaProducer):
        self.service = service
        self.settings = service.settings
        self.http = client
        self.producer = producer
        self.db = service.store.db
        self.readers: dict[str, TopicReader] = {}

    def topic(self, kind: str) -> str:
        name: str = getattr(self.settings, TOPIC_KINDS[kind])
        return name

    async def send(
        self, event: dict[str, Any], *, kind: str | None = None, key: bytes | str | None = "auto"
    ) -> None:
        kind = kind or TOPIC_OF_TYPE.get(event["type"], "lifecycle")
        if key == "auto":
            key = event["data"]["campaign_id"].encode()
        elif isinstance(key, str):
            key = key.encode()
        await self.producer.send_and_wait(self.topic(kind), orjson.dumps(event), key=key)

    async def send_raw(self, kind: str, value: bytes | None, key: bytes | None = None) -> None:
        await self.producer.send_and_wait(self.topic(kind), value, key=key)

    async def reader(self, kind: str) -> TopicReader:
        if kind not in self.readers:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.settings.kafka_bootstrap_servers,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
            )
            await consumer.start()
            topic = self.topic(kind)
            partitions = await eventually(lambda: _partitions(consumer, topic), timeout=20)
            consumer.assign([TopicPartition(topic, p) for p in partitions])
            await consumer.seek_to_beginning()
            self.readers[kind] = TopicReader(consumer)
        return self.readers[kind]

    async def snapshots(self, campaign_id: str | None = None) -> list[dict[str, Any]]:
        messages = await (await self.reader("snapshot")).poll()
        return [m["data"] for m in messages if campaign_id in (None, m["data"]["campaign_id"])]

    async def dead_letters(self) -> list[dict[str, Any]]:
        return [m["data"] for m in await (await self.reader("dead_letter")).poll()]

    async def wait_revision(
        self, campaign_id: str, revision: int, timeout: float = 30
    ) -> dict[str, Any]:
        async def reached() -> dict[str, Any] | None:
            published = await self.snapshots(campaign_id)
            if published and published[-1]["revision"] >= revision:
                return published[-1]
            return None

        result: dict[str, Any] = await eventually(reached, timeout)
        return result

    async def snapshot(self, campaign_id: str) -> httpx.Response:
        return await self.http.get(f"/campaigns/{campaign_id}/snapshot")

    async def count(self, collection: str, query: dict[str, Any] | None = None) -> int:
        return await self.db[collection].count_documents(query or {})

    async def close(self) -> None:
        for reader in self.readers.values():
            await reader.consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> list[int] | None:
    await consumer._client.force_metadata_update()
    partitions = consumer.partitions_for_topic(topic)
    return sorted(partitions) if partitions else None


@contextlib.asynccontextmanager
async def running_ledger(
    settings: Settings, *, client_bootstrap: str | None = None, **wrap: Any
) -> AsyncIterator[Ledger]:
    """The whole service (consumer, maintenance, HTTP app) running in this event loop.

    `client_bootstrap`: where the test's own producer and readers connect, when the service
    connects with credentials they lack (the broker's PLAINTEXT listener). `wrap`: callables
    `(service, name)` that replace a part of the built service before it starts.
    """
    service = build(settings)
    for name, replacement in wrap.items():
        replacement(service, name)
    client_bootstrap = client_bootstrap or settings.kafka_bootstrap_servers
    producer = AIOKafkaProducer(bootstrap_servers=client_bootstrap, acks="all", linger_ms=2)
    await producer.start()
    try:
        async with service.app.router.lifespan_context(service.app):
            transport = httpx.ASGITransport(app=service.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://ledger") as client:
                ledger = Ledger(service, client, producer)
                # Ledger.reader() and topic() read these settings: same topics, client listener.
                ledger.settings = settings.model_copy(
                    update={"kafka_bootstrap_servers": client_bootstrap}
                )
                try:
                    yield ledger
                finally:
                    await ledger.close()
    finally:
        await producer.stop()
        cleanup: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            settings.mongodb_uri.get_secret_value()
        )
        await cleanup.drop_database(settings.mongodb_database)
        await cleanup.close()
