"""`fetch_when_taken`: a long batch does not leave the next records behind a long poll."""

from __future__ import annotations

import asyncio
import time
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from service.adapters.kafka.consumer import fetch_when_taken

LONG_POLL_MS = 3000


async def _records(consumer: AIOKafkaConsumer) -> list[bytes]:
    batch = await consumer.getmany(timeout_ms=15_000)
    return [record.value for records in batch.values() for record in records if record.value]


async def test_records_sent_after_a_long_batch_are_not_held_by_an_idle_poll(
    kafka_bootstrap: str,
) -> None:
    """Without it, aiokafka polls the idle partitions 100 ms into a batch; the broker holds
    that poll for the whole long poll, and the busy partition is fetched only after it."""
    busy, idle = f"fetch-busy-{uuid.uuid4().hex[:8]}", f"fetch-idle-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(busy, 1, 1), NewTopic(idle, 6, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    consumer = AIOKafkaConsumer(
        busy,
        idle,
        bootstrap_servers=kafka_bootstrap,
        group_id=f"fetch-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=LONG_POLL_MS,
    )
    await producer.start()
    await consumer.start()
    try:
        await producer.send_and_wait(busy, b"1")
        assert await _records(consumer) == [b"1"]  # batch 1 begins
        fetch_when_taken(consumer)
        await producer.send_and_wait(busy, b"2")  # fetched while batch 1 runs
        await asyncio.sleep(0.6)  # batch 1 runs past aiokafka's 100 ms backoff
        assert await _records(consumer) == [b"2"]  # batch 2 takes it
        sent = time.monotonic()
        await producer.send_and_wait(busy, b"3")
        assert await _records(consumer) == [b"3"]
        # Held behind the idle poll it would take most of LONG_POLL_MS.
        assert time.monotonic() - sent < LONG_POLL_MS / 1000 / 2
    finally:
        await consumer.stop()
        await producer.stop()
