"""Pieces of the Kafka adapter that need no broker: the partitioner (it must place keys as
Kafka does) and fetching ahead (what is held, dropped and rewound)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import ConsumerStoppedError, KafkaError
from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st

from service.adapters.kafka.fetching import Prefetch
from service.adapters.kafka.publisher import same_partition_as_kafka


@given(key=st.binary(max_size=64), partitions=st.integers(min_value=1, max_value=64))
def test_the_cached_partitioner_places_every_key_where_kafka_does(
    key: bytes, partitions: int
) -> None:
    every = list(range(partitions))
    expected = DefaultPartitioner()(key, every, every)
    assert same_partition_as_kafka(key, every, every) == expected
    assert same_partition_as_kafka(key, every, every) == expected  # from the cache


def test_a_keyless_message_goes_to_an_available_partition() -> None:
    assert same_partition_as_kafka(None, [0, 1, 2], [2]) == 2


class _Consumer:
    """Answers each poll with the next of its fetches once the test lets it arrive (the
    first has arrived); knows what it was asked to seek."""

    def __init__(self, *fetches: list[ConsumerRecord[Any, Any]] | Exception) -> None:
        self.fetches = list(fetches)
        self.asked: list[int] = []
        self.sought: dict[TopicPartition, int] = {}
        self.assigned = {TopicPartition("t", 0), TopicPartition("t", 1)}
        self.arrived = asyncio.Semaphore(1)

    async def arrive(self) -> None:
        """The next fetch reaches the consumer, and the fetching task has run."""
        self.arrived.release()
        for _ in range(10):
            await asyncio.sleep(0)

    async def getmany(
        self, *, timeout_ms: int, max_records: int
    ) -> dict[TopicPartition, list[ConsumerRecord[Any, Any]]]:
        self.asked.append(max_records)
        await self.arrived.acquire()
        answer = self.fetches.pop(0)
        if isinstance(answer, Exception):
            raise answer
        fetched: dict[TopicPartition, list[ConsumerRecord[Any, Any]]] = {}
        for record in answer:
            fetched.setdefault(TopicPartition(record.topic, record.partition), []).append(record)
        return fetched

    def assignment(self) -> set[TopicPartition]:
        return self.assigned

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.sought[tp] = offset


def _record(partition: int, offset: int) -> ConsumerRecord[Any, Any]:
    return ConsumerRecord(
        "t",
        partition,
        offset,
        0,
        0,
        b"k",
        b"v",
        None,
        1,
        1,
        [],
    )


def _prefetch(max_records: int = 10) -> Prefetch:
    return Prefetch(max_records=max_records, max_bytes=1024, poll_ms=50)


async def test_the_next_batch_takes_everything_fetched_while_one_ran() -> None:
    consumer: Any = _Consumer([_record(0, 0)], [_record(0, 1), _record(1, 0)], [_record(0, 2)])
    prefetch = _prefetch()
    try:
        first = await prefetch.take(consumer)
        await consumer.arrive()  # while the batch runs
        await consumer.arrive()
        second = await prefetch.take(consumer)
    finally:
        await prefetch.stop()
    assert [(r.partition, r.offset) for r in first] == [(0, 0)]
    assert [(r.partition, r.offset) for r in second] == [(0, 1), (1, 0), (0, 2)]


async def test_fetching_asks_for_the_room_left_and_stops_when_none_is() -> None:
    consumer: Any = _Consumer([_record(0, 0)], [_record(0, 1)], [_record(0, 2), _record(0, 3)])
    prefetch = _prefetch(max_records=3)
    try:
        await prefetch.take(consumer)
        await consumer.arrive()
        await consumer.arrive()
        assert len(prefetch.held) == 3
        assert consumer.asked == [3, 2, 2]  # the room left each time; none while 3 are held
        assert len(await prefetch.take(consumer)) == 3
        await asyncio.sleep(0.01)  # the fetching task polls again
        assert consumer.asked == [3, 2, 2, 3]
    finally:
        await prefetch.stop()


async def test_a_rewind_drops_what_is_held_of_the_failed_partitions_and_seeks_them_back() -> None:
    consumer: Any = _Consumer([_record(0, 5), _record(1, 7)], [_record(0, 6), _record(1, 8)])
    consumer.assigned = {TopicPartition("t", 0)}  # partition 1 went to another instance
    prefetch = _prefetch()
    try:
        failed = await prefetch.take(consumer)
        await consumer.arrive()
        prefetch.rewind(consumer, [r for r in failed if r.partition == 0])
        assert [(r.partition, r.offset) for r in prefetch.held] == [(1, 8)]
        assert consumer.sought == {TopicPartition("t", 0): 5}
    finally:
        await prefetch.stop()


async def test_a_rebalance_drops_what_is_held_and_makes_the_batch_taken_stale() -> None:
    consumer: Any = _Consumer([_record(0, 0)], [_record(0, 1)])
    prefetch = _prefetch()
    try:
        batch = await prefetch.take(consumer)
        await consumer.arrive()
        assert prefetch.held
        assert not prefetch.is_stale()
        prefetch.drop_all()
        assert prefetch.is_stale()
        assert not prefetch.held
        prefetch.rewind(consumer, batch)  # the new assignment starts from the commits
        assert consumer.sought == {}
    finally:
        await prefetch.stop()


async def test_a_poll_error_reaches_the_next_take_and_fetching_goes_on() -> None:
    consumer: Any = _Consumer(KafkaError("fetch failed"), [_record(0, 0)])
    prefetch = _prefetch()
    try:
        with pytest.raises(KafkaError):
            await prefetch.take(consumer)
        await consumer.arrive()
        assert [r.offset for r in await prefetch.take(consumer)] == [0]
    finally:
        await prefetch.stop()


async def test_a_stopped_consumer_ends_the_subscribers_loop() -> None:
    consumer: Any = _Consumer(ConsumerStoppedError())
    prefetch = _prefetch()
    with pytest.raises(ConsumerStoppedError):
        await prefetch.take(consumer)
    await prefetch.stop()


async def test_with_no_room_to_fetch_ahead_the_handler_polls_itself() -> None:
    consumer: Any = _Consumer([_record(0, 0)])
    prefetch = Prefetch(max_records=10, max_bytes=0, poll_ms=50)
    assert [r.offset for r in await prefetch.take(consumer)] == [0]
    assert prefetch.task is None
