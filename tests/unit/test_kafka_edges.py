"""Pieces of the Kafka adapter that need no broker: the partitioner (it must place keys as
Kafka does) and the batch top-up."""

from __future__ import annotations

from typing import Any

from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st

from service.adapters.kafka.consumer import top_up
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
    def __init__(self, answer: dict[str, list[str]] | Exception) -> None:
        self.answer = answer
        self.asked: list[int] = []

    async def getmany(self, *, timeout_ms: int, max_records: int) -> dict[str, list[str]]:
        self.asked.append(max_records)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


class _Batch:
    def __init__(self, consumer: _Consumer, records: tuple[str, ...]) -> None:
        self.consumer = consumer
        self.raw_message = records


async def test_a_batch_takes_what_the_next_fetch_brought_within_its_room() -> None:
    consumer = _Consumer({"t-0": ["c"], "t-1": ["d", "e"]})
    message: Any = _Batch(consumer, ("a", "b"))
    await top_up(message, max_records=10, timeout_ms=3)
    assert message.raw_message == ("a", "b", "c", "d", "e")
    assert consumer.asked == [8]


async def test_a_full_batch_or_a_fetch_error_leaves_the_batch_as_it_is() -> None:
    full: Any = _Batch(_Consumer({"t-0": ["c"]}), ("a", "b"))
    await top_up(full, max_records=2, timeout_ms=3)
    assert full.raw_message == ("a", "b")
    failing: Any = _Batch(_Consumer(KafkaError("fetch failed")), ("a",))
    await top_up(failing, max_records=10, timeout_ms=3)
    assert failing.raw_message == ("a",)
