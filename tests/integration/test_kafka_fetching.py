"""Fetching against a real broker: a long batch does not leave the next records behind a
long poll (`fetch_when_taken`), and fetching ahead (`Prefetch`) loses and repeats nothing."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from service.adapters.kafka.fetching import Prefetch, fetch_when_taken

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


# ---- Prefetch: fetching ahead while a batch runs, against a real broker


async def _topic(kafka_bootstrap: str, partitions: int = 1) -> str:
    name = f"prefetch-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()
    return name


def _consumer(kafka_bootstrap: str, topic: str, group: str, **options: Any) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **options,
    )


async def _held(prefetch: Prefetch, count: int) -> None:
    deadline = time.monotonic() + 15
    while len(prefetch.held) < count:
        assert time.monotonic() < deadline, f"{len(prefetch.held)} of {count} fetched ahead"
        await asyncio.sleep(0.01)


async def _take(prefetch: Prefetch, consumer: AIOKafkaConsumer, count: int) -> list[bytes]:
    values: list[bytes] = []
    deadline = time.monotonic() + 15
    while len(values) < count:
        assert time.monotonic() < deadline, f"{values} of {count}"
        values += [r.value for r in await prefetch.take(consumer)]
    return values


@contextlib.asynccontextmanager
async def _fetching_ahead(
    kafka_bootstrap: str,
) -> AsyncIterator[tuple[str, AIOKafkaProducer, AIOKafkaConsumer, Prefetch]]:
    """A topic of one partition, a producer, and a consumer of its own group fetching ahead."""
    topic = await _topic(kafka_bootstrap)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    consumer = _consumer(kafka_bootstrap, topic, f"prefetch-{uuid.uuid4().hex[:8]}")
    prefetch = Prefetch(max_records=100, max_bytes=1 << 20, poll_ms=100)
    await producer.start()
    await consumer.start()
    try:
        yield topic, producer, consumer, prefetch
    finally:
        await prefetch.stop()
        await consumer.stop()
        await producer.stop()


async def test_records_sent_while_a_batch_runs_are_fetched_during_it(kafka_bootstrap: str) -> None:
    """Without fetching ahead nothing is fetched after the fetch the batch set off."""
    async with _fetching_ahead(kafka_bootstrap) as (topic, producer, consumer, prefetch):
        await producer.send_and_wait(topic, b"1")
        assert await _take(prefetch, consumer, 1) == [b"1"]  # batch 1 begins
        for value in (b"2", b"3", b"4"):
            await producer.send_and_wait(topic, value)
            await asyncio.sleep(0.05)  # one at a time, each after the last was fetched
        await _held(prefetch, 3)  # all fetched while batch 1 still runs
        assert [r.value for r in await prefetch.take(consumer)] == [b"2", b"3", b"4"]


async def test_a_failed_batch_comes_again_once_in_order_with_what_was_fetched_after_it(
    kafka_bootstrap: str,
) -> None:
    async with _fetching_ahead(kafka_bootstrap) as (topic, producer, consumer, prefetch):
        await producer.send_and_wait(topic, b"1")
        await producer.send_and_wait(topic, b"2")
        failed: list[Any] = []
        while len(failed) < 2:
            failed += await prefetch.take(consumer)
        await producer.send_and_wait(topic, b"3")
        await _held(prefetch, 1)
        prefetch.rewind(consumer, failed)  # the batch of 1 and 2 failed
        assert await _take(prefetch, consumer, 3) == [b"1", b"2", b"3"]
        await asyncio.sleep(0.3)
        assert not prefetch.held  # nothing came twice


class _DropOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, prefetch: Prefetch) -> None:
        self.prefetch = prefetch

    async def on_partitions_revoked(self, revoked: Any) -> None:
        self.prefetch.drop_all()

    async def on_partitions_assigned(self, assigned: Any) -> None:
        return None


async def test_a_rebalance_leaves_what_was_held_and_taken_to_the_next_owners(
    kafka_bootstrap: str,
) -> None:
    """Nothing committed: after the rebalance both owners start from the beginning, and
    between them every record comes again; the stale batch is not for processing."""
    topic = await _topic(kafka_bootstrap, partitions=2)
    group = f"prefetch-{uuid.uuid4().hex[:8]}"
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    first = _consumer(kafka_bootstrap, topic, group)
    second = _consumer(kafka_bootstrap, topic, group)
    ahead = Prefetch(max_records=100, max_bytes=1 << 20, poll_ms=100)
    other = Prefetch(max_records=100, max_bytes=1 << 20, poll_ms=100)
    first.subscribe([topic], listener=_DropOnRevoke(ahead))
    await producer.start()
    await first.start()
    try:
        sent = [str(i).encode() for i in range(40)]
        for index, value in enumerate(sent[:20]):
            await producer.send_and_wait(topic, value, partition=index % 2)
        await _take(ahead, first, 1)  # a batch taken; the rest of the 20 fetched ahead
        for index, value in enumerate(sent[20:]):
            await producer.send_and_wait(topic, value, partition=index % 2)
        await _held(ahead, 1)
        second.subscribe([topic], listener=_DropOnRevoke(other))
        await second.start()
        deadline = time.monotonic() + 30
        while not ahead.is_stale():  # the first consumer rejoins as it polls
            assert time.monotonic() < deadline, "no rebalance"
            await ahead.take(first)
        assert not ahead.held or ahead.is_stale()
        seen: set[bytes] = set()
        deadline = time.monotonic() + 30
        while seen != set(sent):
            assert time.monotonic() < deadline, f"{len(seen)} of {len(sent)} after the rebalance"
            for prefetch, consumer in ((ahead, first), (other, second)):
                batch = await prefetch.take(consumer)
                if not prefetch.is_stale():
                    seen.update(r.value for r in batch)
    finally:
        await ahead.stop()
        await other.stop()
        await first.stop()
        await second.stop()
        await producer.stop()
