"""The Kafka entry point: one thin batch subscriber over the four input topics."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any, cast

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import KafkaError
from faststream.kafka import KafkaBroker, Topic
from faststream.kafka.annotations import KafkaMessage
from faststream.middlewares import AckPolicy
from pydantic import WithJsonSchema

from service.adapters.kafka import (
    fetch_when_taken,
    next_offsets,
    raw_records,
    raw_values,
    tolerant_parser,
    top_up,
)
from service.adapters.mongo_store import ConcurrentUpdate, StoreUnavailable
from service.app import telemetry
from service.app.health import Watchdog
from service.app.processor import BatchProcessor
from service.settings import Settings

log = structlog.get_logger(__name__)

# The handler receives raw values (decoding is ours). What a record holds is documented by
# service/schemas.py (schemas/asyncapi.json), not by FastStream's generator, which is unused.
InboundBatch = Annotated[list[bytes], WithJsonSchema({"type": "array"})]


class Backoff:
    """Growing pauses while MongoDB or Kafka are away, so a retry loop never spins."""

    def __init__(self, first: float = 0.5, cap: float = 30.0) -> None:
        self.first = first
        self.cap = cap
        self.failures = 0

    async def wait(self) -> None:
        self.failures += 1
        await asyncio.sleep(min(self.cap, self.first * 2 ** (self.failures - 1)))

    def reset(self) -> None:
        self.failures = 0


class CommitBehind:
    """Commits a batch's offsets while the next batch is fetched and applied.

    The commit is a batch's last step (after its transaction and its publication) and one
    round trip to the group coordinator that nothing else waits on: run beside the next
    batch, it leaves the time between batches. Commits stay in order (each waits for the
    one before), and a rebalance or a stop waits for the one in flight (`wait`, `drain`), so
    the next owner starts where this instance finished. A crash before it lands redelivers
    one more batch, which finds its events applied and changes nothing.
    """

    def __init__(self, watchdog: Watchdog) -> None:
        self.watchdog = watchdog
        self.pending: asyncio.Future[None] | None = None
        self.inline = False

    async def commit(self, message: KafkaMessage) -> None:
        await self.wait()
        consumer = cast("AIOKafkaConsumer", message.consumer)
        offsets = next_offsets(message)
        if self.inline:
            await self._commit(consumer, offsets)
        else:
            self.pending = asyncio.ensure_future(self._commit(consumer, offsets))

    async def wait(self) -> None:
        if self.pending is not None:
            await self.pending

    async def drain(self) -> None:
        """Before the consumer stops: the commit in flight lands, later ones go in line."""
        self.inline = True
        await self.wait()

    async def _commit(self, consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int]) -> None:
        started = time.perf_counter()
        try:
            await consumer.commit(offsets)
        except KafkaError as error:  # a rebalance took the partitions: they are redelivered
            log.warning("commit_failed", error=str(error))
            return
        telemetry.BATCH_PHASE_SECONDS.labels("ack").observe(time.perf_counter() - started)
        self.watchdog.progressed()


class FinishBatchBeforeRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    """A rebalance waits until the batch in flight is published and its offsets committed.

    aiokafka revokes partitions from its coordinator task while the handler may still be
    publishing: the next owner would redeliver the batch, read its outbox before this
    instance noted it published, and send older revisions after newer ones.
    """

    def __init__(self, commits: CommitBehind, processor: BatchProcessor) -> None:
        self.in_flight = asyncio.Lock()
        self.commits = commits
        self.processor = processor

    async def on_partitions_revoked(self, revoked: Any) -> None:
        async with self.in_flight:
            await asyncio.gather(self.commits.wait(), self.processor.flush())

    async def on_partitions_assigned(self, assigned: Any) -> None:
        return None


async def _rewind(message: KafkaMessage) -> None:
    """Seek back to the batch's first offsets, so the same records come again."""
    try:
        await message.nack()
    except (KafkaError, AssertionError) as error:
        # The partitions went to another instance meanwhile: it starts from the last commit.
        log.warning("rewind_skipped", error=str(error))


def register_consumer(
    broker: KafkaBroker,
    settings: Settings,
    processor: BatchProcessor,
    watchdog: Watchdog,
    commits: CommitBehind,
) -> Any:
    """Subscribe the batch handler; returns the subscriber (its `.consumer` once started).

    The progress watchdog (liveness) hears of every batch begun and every batch committed.
    """
    backoff = Backoff()
    # declare=False: FastStream never creates topics; ensure_topics (adapters/kafka.py) has
    # created or checked all six before the subscriber starts (KAFKA_CREATE_TOPICS).
    topics = [Topic(name, declare=False) for name in settings.input_topics]
    rebalance = FinishBatchBeforeRevoke(commits, processor)

    subscriber = broker.subscriber(
        *topics,
        batch=True,
        group_id=settings.kafka_group_id,
        ack_policy=AckPolicy.MANUAL,
        auto_offset_reset="earliest",
        max_records=settings.kafka_max_batch_records,
        # Live events should not wait on idle partitions' long polls (issue 9).
        fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
        batch_timeout_ms=settings.kafka_batch_timeout_ms,
        # Range assignment gives one instance the same partition of every input topic; with
        # equal partition counts a campaign's events then meet in one instance.
        partition_assignment_strategy=(RangePartitionAssignor,),
        listener=rebalance,
        parser=tolerant_parser,
        decoder=raw_values,
        title="campaign-ledger/inbound",
        description="Artifact, audit, feedback and lifecycle events (CloudEvents, keyed by "
        "campaign id). Each batch is stored in one MongoDB transaction before its offsets "
        "are committed.",
    )

    @subscriber
    async def consume(values: InboundBatch, message: KafkaMessage) -> None:
        async with rebalance.in_flight:
            await _consume(message)

    async def _consume(message: KafkaMessage) -> None:
        fetch_when_taken(cast("AIOKafkaConsumer", message.consumer))
        await top_up(message, settings.kafka_max_batch_records, settings.kafka_top_up_ms)
        records = raw_records(message)
        watchdog.busy()
        try:
            result = await processor.process(records)
        except (StoreUnavailable, ConcurrentUpdate, KafkaError) as error:
            # Nothing is committed: rewind to the batch's first offsets and try again later.
            telemetry.BATCH_FAILURES.labels(type(error).__name__).inc()
            log.warning("batch_retry_later", error=str(error), records=len(records))
            await _rewind(message)
            await backoff.wait()
            return
        except Exception:
            telemetry.BATCH_FAILURES.labels("unexpected").inc()
            log.exception("batch_failed", records=len(records))
            await _rewind(message)
            await backoff.wait()
            return
        backoff.reset()
        # Both land beside the next batch: the offsets (CommitBehind) and, at most once a
        # second, the published mark (BatchProcessor.settle, before the next transaction).
        await commits.commit(message)
        log.debug(
            "batch_done",
            records=result.records,
            applied=result.applied,
            duplicates=result.duplicates,
            held=result.held,
            rejected=result.rejected,
        )

    return subscriber
