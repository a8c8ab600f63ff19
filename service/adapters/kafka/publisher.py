"""The outbox publisher: snapshots and dead letters to their topics, keyed by campaign."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError
from aiokafka.partitioner import DefaultPartitioner, murmur2
from faststream.kafka.security import parse_security

from service.adapters.kafka.broker import PRODUCER_OPTIONS, security_from
from service.app.outbox import OutboxEntry
from service.settings import Settings

CLOUDEVENTS_JSON = "application/cloudevents+json"


@functools.lru_cache(maxsize=65536)
def _key_hash(key: bytes) -> int:
    return int(murmur2(key)) & 0x7FFFFFFF


def same_partition_as_kafka(
    key: bytes | None, all_partitions: list[int], available: list[int]
) -> int:
    """Kafka's default partitioner (murmur2 of the key, as every Kafka client has it), with
    each key's hash remembered: the same campaigns come back batch after batch, and
    aiokafka's murmur2 is pure Python."""
    if key is None:
        return int(DefaultPartitioner()(key, all_partitions, available))
    return all_partitions[_key_hash(key) % len(all_partitions)]


class KafkaPublisher:
    """Sends outbox entries to the snapshot and dead letter topics, keyed by campaign.

    It sends through an aiokafka producer of its own (`start`, `stop`), with the options of
    FastStream's: FastStream's publish path (a correlation id, a command and its middlewares
    per message) was a large share of the service's CPU per event when every revision is
    published.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topics = {
            "snapshot": settings.topic_snapshot_updated,
            "dead_letter": settings.topic_dead_letter,
        }
        self.producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        # Made here, not in __init__: aiokafka binds a producer to the running event loop.
        producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.kafka_servers,
            **PRODUCER_OPTIONS,
            **parse_security(security_from(self.settings)),
        )
        await producer.start()
        self.producer = producer

    async def stop(self) -> None:
        producer, self.producer = self.producer, None
        if producer is not None:
            await producer.stop()

    async def publish(self, entries: Sequence[OutboxEntry]) -> None:
        """Send each entry to its topic, keyed, in order per partition; return once Kafka has
        acknowledged them all.

        The records go as one record batch per partition (aiokafka's `create_batch` and
        `send_batch`), placed by Kafka's default partitioner as `send` would place them:
        `send` costs a coroutine, a future and a metadata object per message, about a tenth
        of the service's CPU with every revision published. A partition's batches are sent
        in order, and with idempotence on, retries cannot reorder them.
        """
        if not entries:
            return
        producer = self.producer
        if producer is None:
            raise KafkaConnectionError("the outbox publisher is not started")
        partitions: dict[str, list[int]] = {}
        records: dict[tuple[str, int], list[tuple[bytes | None, bytes]]] = {}
        for entry in entries:
            topic = self.topics[entry.kind]
            if topic not in partitions:
                partitions[topic] = sorted(await producer.partitions_for(topic))
            key = entry.key.encode("utf-8") if entry.key is not None else None
            partition = same_partition_as_kafka(key, partitions[topic], partitions[topic])
            records.setdefault((topic, partition), []).append((key, entry.value))
        acknowledged = []
        for (topic, partition), items in records.items():
            send = functools.partial(producer.send_batch, topic=topic, partition=partition)
            batch = producer.create_batch()
            for key, value in items:
                if batch.append(key=key, value=value, timestamp=None, headers=_HEADERS) is None:
                    # Full: send it and begin the next, where a first record always fits.
                    acknowledged.append(await send(batch))
                    batch = producer.create_batch()
                    batch.append(key=key, value=value, timestamp=None, headers=_HEADERS)
            acknowledged.append(await send(batch))
        await asyncio.gather(*acknowledged)


_HEADERS = [("content-type", CLOUDEVENTS_JSON.encode())]
