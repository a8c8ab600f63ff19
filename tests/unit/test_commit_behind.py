"""The offsets commit that runs beside the next batch: in order, and never lost at a stop."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError

from service.adapters.kafka.consumer import CommitBehind
from service.app.health import Watchdog


@dataclass
class Record:
    topic: str
    partition: int
    offset: int


@dataclass
class SlowConsumer:
    """Commits take `delay` seconds; what landed is recorded in order."""

    delay: float = 0.05
    fail: bool = False
    landed: list[dict[TopicPartition, int]] = field(default_factory=list)

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        await asyncio.sleep(self.delay)
        if self.fail:
            raise CommitFailedError("the group rebalanced")
        self.landed.append(offsets)


@dataclass
class Batch:
    consumer: Any
    raw_message: tuple[Record, ...]


def batch(consumer: SlowConsumer, *offsets: tuple[int, int]) -> Any:
    return Batch(consumer, tuple(Record("t", partition, offset) for partition, offset in offsets))


async def test_a_commit_returns_at_once_and_lands_after_each_partitions_last_record() -> None:
    consumer = SlowConsumer()
    commits = CommitBehind(Watchdog(60))
    await commits.commit(batch(consumer, (0, 4), (0, 7), (1, 2)))
    assert consumer.landed == []  # the next batch may begin
    await commits.wait()
    assert consumer.landed == [{TopicPartition("t", 0): 8, TopicPartition("t", 1): 3}]


async def test_commits_land_in_order() -> None:
    consumer = SlowConsumer()
    commits = CommitBehind(Watchdog(60))
    for offset in range(5):
        await commits.commit(batch(consumer, (0, offset)))
    await commits.wait()
    assert [o[TopicPartition("t", 0)] for o in consumer.landed] == [1, 2, 3, 4, 5]


async def test_drain_lands_the_commit_in_flight_and_makes_later_ones_wait() -> None:
    consumer = SlowConsumer()
    commits = CommitBehind(Watchdog(60))
    await commits.commit(batch(consumer, (0, 9)))
    await commits.drain()
    assert len(consumer.landed) == 1
    await commits.commit(batch(consumer, (0, 10)))  # the batch that was in flight at the stop
    assert len(consumer.landed) == 2


async def test_a_refused_commit_is_logged_and_the_next_one_still_goes() -> None:
    consumer = SlowConsumer(fail=True)
    ticks = itertools.count()
    watchdog = Watchdog(60, clock=lambda: float(next(ticks)))
    progress = watchdog.last_progress
    commits = CommitBehind(watchdog)
    await commits.commit(batch(consumer, (0, 1)))
    await commits.wait()  # no exception: the partitions went elsewhere, they are redelivered
    assert watchdog.last_progress == progress  # no progress claimed
    consumer.fail = False
    await commits.commit(batch(consumer, (0, 2)))
    await commits.wait()
    assert consumer.landed == [{TopicPartition("t", 0): 3}]
    assert watchdog.last_progress > progress
