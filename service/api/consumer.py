"""The Kafka entry point: one thin batch subscriber over the four input topics."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

import structlog
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import KafkaError
from faststream.kafka import KafkaBroker, Topic
from faststream.kafka.annotations import KafkaMessage
from faststream.middlewares import AckPolicy
from pydantic import WithJsonSchema

from service.adapters.kafka import raw_records, raw_values, tolerant_parser, top_up
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


class FinishBatchBeforeRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    """A rebalance waits until the batch in flight is published and its offsets committed.

    aiokafka revokes partitions from its coordinator task while the handler may still be
    publishing: the next owner would redeliver the batch, read its outbox before this
    instance noted it published, and send older revisions after newer ones.
    """

    def __init__(self) -> None:
        self.in_flight = asyncio.Lock()

    async def on_partitions_revoked(self, revoked: Any) -> None:
        async with self.in_flight:
            pass

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
    watchdog: Watchdog | None = None,
) -> Any:
    """Subscribe the batch handler; returns the subscriber (its `.consumer` once started)."""
    backoff = Backoff()
    # The progress watchdog (liveness) hears of every batch begun and every batch committed.
    watchdog = watchdog or Watchdog(settings.watchdog_stall_seconds)
    # declare=False: FastStream never creates topics; ensure_topics (adapters/kafka.py) has
    # created or checked all six before the subscriber starts (KAFKA_CREATE_TOPICS).
    topics = [Topic(name, declare=False) for name in settings.input_topics]
    rebalance = FinishBatchBeforeRevoke()

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
        committing = time.perf_counter()
        try:
            # The offsets and the published mark (see BatchProcessor.settle) at once.
            await asyncio.gather(message.ack(), processor.settle())
            telemetry.BATCH_PHASE_SECONDS.labels("ack").observe(time.perf_counter() - committing)
        except KafkaError as error:  # a rebalance took the partitions: they are redelivered
            log.warning("commit_failed", error=str(error))
        else:
            watchdog.progressed()
        log.debug(
            "batch_done",
            records=result.records,
            applied=result.applied,
            duplicates=result.duplicates,
            held=result.held,
            rejected=result.rejected,
        )

    return subscriber
