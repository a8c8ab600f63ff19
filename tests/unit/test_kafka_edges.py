"""Pure pieces of the Kafka adapter that must agree with Kafka exactly."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st

from service.adapters.kafka import same_partition_as_kafka


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
