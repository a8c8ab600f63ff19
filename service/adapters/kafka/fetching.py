"""How records come from Kafka to the batch handler: fetched ahead while a batch runs, taken
all at once when it ends, rewound on failure and dropped on a rebalance."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Iterable
from typing import Any, TypeAlias

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import IllegalStateError, KafkaError

from service.settings import Settings

log = structlog.get_logger(__name__)

Record: TypeAlias = "ConsumerRecord[Any, Any]"

# Longer than any batch: see `fetch_when_taken`.
HOLD_FETCHES_SECONDS = 24 * 3600.0


def fetch_when_taken(consumer: AIOKafkaConsumer) -> None:
    """Fetch again when the fetched records are taken, not 100 ms later.

    aiokafka keeps one fetch in flight per broker. Records fetched and not yet taken hold
    the next fetch to their broker back for 100 ms (its `prefetch_backoff`, which
    AIOKafkaConsumer does not expose); after that it fetches the broker's other partitions,
    and the broker holds that fetch up to `fetch_max_wait_ms` when they are idle. So a
    reader that took its records late polled the idle partitions once per
    `fetch_max_wait_ms` (each poll of 24 partitions cost about 1 ms of CPU here, and the
    broker's CPU too), and the partitions it had taken could not be fetched before that poll
    came back.

    Holding fetches until the records are taken, the fetch goes out the moment they are
    (the fetcher wakes on it) and covers every partition of the broker; the broker answers
    it as soon as any of them has a record, so a long `fetch_max_wait_ms` delays no record
    and an idle consumer polls seldom. `Prefetch` takes records the moment they arrive, so
    with it the next fetch is always in flight.
    """
    fetcher = getattr(consumer, "_fetcher", None)
    if fetcher is not None and getattr(fetcher, "_prefetch_backoff", None) != HOLD_FETCHES_SECONDS:
        fetcher._prefetch_backoff = HOLD_FETCHES_SECONDS  # aiokafka's own: see above


class Prefetch:
    """Takes records from aiokafka the moment they are fetched, so the next fetch is in
    flight while a batch runs, and hands the handler everything that arrived meanwhile.

    aiokafka fetches a partition again only once its fetched records are consumed, and
    its consumed position moves only then. Left to the handler, records reaching the broker
    after the fetch a batch set off waited for that batch, then for the fetch the next one
    set off, then for the whole next batch: two batch times at 100 events/s. Here a task
    consumes them as they come (up to `max_records` and `max_bytes` held; `max_bytes` 0
    turns it off: the handler polls aiokafka itself), and the handler takes them all when
    its batch ends.

    Records held here are consumed for aiokafka but not processed, so every way they could
    be lost is closed:
    - offsets are committed per batch from the batch's own records (`next_offsets`), never
      from aiokafka's position;
    - a failed batch rewinds (`rewind`): the held records of its partitions are dropped and
      those partitions seek back to the batch's first offsets, in one step with no await,
      so no record fetched before the seek is kept;
    - a rebalance drops everything held (`drop_all`, first thing in the rebalance
      listener): aiokafka hands out no record from the moment a rebalance begins until the
      new assignment, which starts from the committed offsets. A batch taken before the
      rebalance is stale (`is_stale`) and is not processed: its records go to the
      partitions' next owner, this instance included, from the committed offsets.
    """

    def __init__(self, *, max_records: int, max_bytes: int, poll_ms: int) -> None:
        self.max_records = max_records
        self.max_bytes = max_bytes
        self.poll_ms = poll_ms
        self.consumer: AIOKafkaConsumer | None = None
        self.task: asyncio.Task[None] | None = None
        self.held: deque[Record] = deque()
        self.held_bytes = 0
        # A poll's error, raised to the subscriber's loop at its next take, as the poll's own
        # would be (KafkaError: it backs off and polls again; ConsumerStoppedError: it ends).
        self.failure: Exception | None = None
        self.arrived = asyncio.Event()
        self.room = asyncio.Event()
        # Bumped by each rebalance: a batch taken in an older assignment is stale.
        self.assignment = 0
        self.taken_in = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> Prefetch:
        return cls(
            max_records=settings.kafka_max_batch_records,
            max_bytes=settings.kafka_prefetch_bytes,
            poll_ms=settings.kafka_batch_timeout_ms,
        )

    async def take(self, consumer: AIOKafkaConsumer) -> tuple[Record, ...]:
        """Everything held (up to `max_records`); waits up to the poll time when none is."""
        fetch_when_taken(consumer)
        if not self.max_bytes:
            fetched = await consumer.getmany(timeout_ms=self.poll_ms, max_records=self.max_records)
            # aiokafka hands out records of the current assignment only (never during a
            # rebalance), so what it returned is of the assignment as it is now.
            self.taken_in = self.assignment
            return tuple(record for records in fetched.values() for record in records)
        if consumer is not self.consumer:  # started, or restarted with a new consumer
            await self.stop()
            self.consumer = consumer
        if self.task is None or (self.task.done() and self.failure is None):
            self.task = asyncio.create_task(self._fetch_ahead(consumer), name="kafka-prefetch")
        if not self.held and self.failure is None:
            self.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), self.poll_ms / 1000)
        self.room.set()
        if self.failure is not None:
            # Raised where the poll's own error would be: the subscriber's loop backs off.
            failure, self.failure = self.failure, None
            raise failure
        batch = tuple(self.held.popleft() for _ in range(min(len(self.held), self.max_records)))
        self.held_bytes -= sum(_size(r) for r in batch)
        self.taken_in = self.assignment
        return batch

    def first_held(self, tp: TopicPartition) -> int | None:
        """The offset of a partition's first record held (fetched, not yet taken)."""
        return next(
            (r.offset for r in self.held if r.topic == tp.topic and r.partition == tp.partition),
            None,
        )

    def is_stale(self) -> bool:
        """The last batch taken came before a rebalance."""
        return self.taken_in != self.assignment

    def drop_all(self) -> None:
        """A rebalance began: nothing held may be handed out (see the class)."""
        self._keep([])
        self.assignment += 1

    def rewind(self, consumer: AIOKafkaConsumer, batch: Iterable[Record]) -> None:
        """Fetch a failed batch's partitions again from its first offsets."""
        first: dict[TopicPartition, int] = {}
        for record in batch:
            tp = TopicPartition(record.topic, record.partition)
            first[tp] = min(first.get(tp, record.offset), record.offset)
        self._keep([r for r in self.held if TopicPartition(r.topic, r.partition) not in first])
        if self.is_stale():
            return  # a rebalance came between: the new assignment starts from the commits
        assigned = consumer.assignment()
        for tp, offset in first.items():
            if tp not in assigned:
                continue  # another instance has it now: it starts from the last commit
            try:
                consumer.seek(tp, offset)
            except IllegalStateError as error:
                log.warning("rewind_skipped", partition=str(tp), error=str(error))

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        self.task = self.consumer = self.failure = None
        self._keep([])

    def _keep(self, records: list[Record]) -> None:
        self.held = deque(records)
        self.held_bytes = sum(_size(r) for r in records)
        self.room.set()

    async def _fetch_ahead(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            if self.failure is not None or self._full():
                self.room.clear()
                await self.room.wait()
                continue
            try:
                fetched = await consumer.getmany(
                    timeout_ms=self.poll_ms, max_records=self.max_records - len(self.held)
                )
            except KafkaError as error:
                self.failure = error  # the loop backs off; fetching goes on after it
                self.arrived.set()
                continue
            except Exception as error:  # ConsumerStoppedError, or a fault of aiokafka's
                self.failure = error  # the next take raises it, the one after starts again
                self.arrived.set()
                return
            for records in fetched.values():
                self.held.extend(records)
                self.held_bytes += sum(_size(r) for r in records)
            if fetched:
                self.arrived.set()

    def _full(self) -> bool:
        return len(self.held) >= self.max_records or self.held_bytes >= self.max_bytes


def _size(record: Record) -> int:
    return len(record.value or b"") + len(record.key or b"")
