"""The Kafka consumer: one thin batch subscriber over the four input topics, and what makes
it safe and prompt (raw records, offset commits behind the next batch, rebalances that wait
for the batch in flight; fetching is `fetching.py`'s)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Annotated, Any, cast

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import KafkaError
from faststream.kafka import KafkaBroker, Topic
from faststream.kafka.annotations import KafkaMessage
from faststream.message import StreamMessage
from faststream.middlewares import AckPolicy
from pydantic import WithJsonSchema

from service.adapters.kafka.fetching import Prefetch
from service.app import telemetry
from service.app.health import Watchdog
from service.app.processor import BatchProcessor, BatchResult
from service.app.store import ConcurrentUpdate, StoreUnavailable
from service.domain.ingest import RawRecord
from service.settings import Settings

log = structlog.get_logger(__name__)


# ---- records -------------------------------------------------------------------------------


async def tolerant_parser(message: Any, original: Any) -> StreamMessage[Any]:
    """FastStream's batch parser, made safe for header values that are not UTF-8 text.

    The stock parser decodes every header strictly; one bad header would fail the whole batch
    before our code sees it. FastStream gets copies whose undecodable header bytes are
    replaced; the message keeps the original records, whose header bytes `raw_records` reads
    (binary-mode attributes, dead letters). Same offsets, so acknowledging is unchanged.
    """
    originals = tuple(message)
    records = tuple(
        record if _text_headers(record) else _with_text_headers(record) for record in originals
    )
    parsed: StreamMessage[Any] = await original(records)
    parsed.raw_message = originals
    return parsed


def _text_headers(record: ConsumerRecord[Any, Any]) -> bool:
    """Every header value is UTF-8 text: the record goes to FastStream as it is."""
    try:
        for _, value in record.headers:
            value.decode("utf-8")
    except (AttributeError, UnicodeDecodeError):  # AttributeError: a header without a value
        return False
    return True


def _with_text_headers(record: ConsumerRecord[Any, Any]) -> ConsumerRecord[Any, Any]:
    return dataclasses.replace(
        record,
        headers=[
            (name, (value or b"").decode("utf-8", "replace").encode("utf-8"))
            for name, value in record.headers
        ],
    )


async def raw_values(message: StreamMessage[Any], original: Any) -> list[bytes]:
    """The batch's values as bytes: decoding is ours (service.domain.ingest), not FastStream's."""
    return [record.value or b"" for record in message.raw_message]


def next_offsets(message: KafkaMessage) -> dict[TopicPartition, int]:
    """Where each partition of a batch goes on: the offset after its last record."""
    offsets: dict[TopicPartition, int] = {}
    for record in message.raw_message:
        tp = TopicPartition(record.topic, record.partition)
        offsets[tp] = max(offsets.get(tp, 0), record.offset + 1)
    return offsets


def raw_records(message: KafkaMessage) -> list[RawRecord]:
    records: tuple[ConsumerRecord[Any, Any], ...] = message.raw_message
    return [
        RawRecord(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            value=record.value,
            headers=tuple((name, value or b"") for name, value in headers)
            if (headers := record.headers)
            else (),
            timestamp_ms=record.timestamp,
        )
        for record in records
    ]


# ---- the subscriber --------------------------------------------------------------------------


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

    async def commit(
        self, message: KafkaMessage, after: asyncio.Future[BatchResult] | None = None
    ) -> None:
        """Commit the batch's offsets once `after` (its publication, running behind) has
        ended; never if it failed."""
        await self.wait()
        consumer = cast("AIOKafkaConsumer", message.consumer)
        offsets = next_offsets(message)
        if self.inline:
            await self._commit(consumer, offsets, after)
        else:
            self.pending = asyncio.ensure_future(self._commit(consumer, offsets, after))

    async def wait(self) -> None:
        if self.pending is not None:
            await self.pending

    async def drain(self) -> None:
        """Before the consumer stops: the commit in flight lands, later ones go in line."""
        self.inline = True
        await self.wait()

    async def _commit(
        self,
        consumer: AIOKafkaConsumer,
        offsets: dict[TopicPartition, int],
        after: asyncio.Future[BatchResult] | None,
    ) -> None:
        if after is not None:
            try:
                result = await asyncio.shield(after)  # a stop waiting here leaves it running
            except Exception as error:  # given up at a rebalance or a stop: redelivered
                telemetry.BATCH_FAILURES.labels(type(error).__name__).inc()
                log.warning("batch_unpublished_left_uncommitted", error=str(error))
                return
            _done(result)
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

    def __init__(
        self, commits: CommitBehind, processor: BatchProcessor, prefetch: Prefetch
    ) -> None:
        self.in_flight = asyncio.Lock()
        self.commits = commits
        self.processor = processor
        self.prefetch = prefetch

    async def on_partitions_revoked(self, revoked: Any) -> None:
        self.prefetch.drop_all()  # before any other batch can be taken: see Prefetch
        # A publication Kafka keeps refusing ends its batch, uncommitted, for the next owner.
        self.processor.give_up_retrying()
        async with self.in_flight:
            await asyncio.gather(self.commits.wait(), self.processor.flush())

    async def on_partitions_assigned(self, assigned: Any) -> None:
        return None


def register_consumer(
    broker: KafkaBroker,
    settings: Settings,
    processor: BatchProcessor,
    commits: CommitBehind,
    prefetch: Prefetch,
) -> Any:
    """Subscribe the batch handler; returns the subscriber (its `.consumer` once started).

    The progress watchdog (liveness) hears of every batch begun and every batch committed.
    """
    watchdog = commits.watchdog
    backoff = Backoff()
    # declare=False: FastStream never creates topics; ensure_topics (adapters/kafka.py) has
    # created or checked all six before the subscriber starts (KAFKA_CREATE_TOPICS).
    topics = [Topic(name, declare=False) for name in settings.input_topics]
    rebalance = FinishBatchBeforeRevoke(commits, processor, prefetch)

    subscriber = broker.subscriber(
        *topics,
        batch=True,
        group_id=settings.kafka_group_id,
        ack_policy=AckPolicy.MANUAL,
        auto_offset_reset="earliest",
        max_records=settings.kafka_max_batch_records,
        # Live events should not wait on idle partitions' long polls.
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
        if prefetch.is_stale():
            # Taken before a rebalance: the partitions' owner now starts from their commits.
            log.info("batch_left_to_new_assignment", records=len(message.raw_message))
            return
        records = raw_records(message)
        watchdog.busy()
        try:
            batch = await _stored(records)
        except (StoreUnavailable, ConcurrentUpdate, KafkaError) as error:
            # Nothing is committed: rewind to the batch's first offsets and try again later.
            telemetry.BATCH_FAILURES.labels(type(error).__name__).inc()
            log.warning("batch_retry_later", error=str(error), records=len(records))
            _rewind(prefetch, message)
            await backoff.wait()
            return
        except Exception:
            telemetry.BATCH_FAILURES.labels("unexpected").inc()
            log.exception("batch_failed", records=len(records))
            _rewind(prefetch, message)
            await backoff.wait()
            return
        backoff.reset()
        # All land beside the next batch: the publication (BatchProcessor, publish_behind),
        # the offsets once it has ended (CommitBehind) and, at most once a second, the
        # published mark (BatchProcessor.settle, before the next transaction).
        await commits.commit(message, after=batch)

    async def _stored(records: list[RawRecord]) -> asyncio.Future[BatchResult]:
        """Run the batch until its transactions are committed; the rest of it (its
        publication) goes on in the returned future. Raises what the batch raised before."""
        if not processor.publish_behind:
            result = await processor.process(records)
            done: asyncio.Future[BatchResult] = asyncio.get_running_loop().create_future()
            done.set_result(result)
            return done
        committed = asyncio.get_running_loop().create_future()
        batch = asyncio.ensure_future(
            processor.process(records, stored=lambda: committed.set_result(None))
        )
        try:
            await asyncio.wait((batch, committed), return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            batch.cancel()  # the handler was cancelled (a stop past its grace): so is the batch
            raise
        if not committed.done() or (batch.done() and batch.exception() is not None):
            batch.result()  # raises the batch's error: nothing of it is committed to Kafka
        return batch

    # FastStream's batch poll, less its sleep after an empty poll (a record arriving in it
    # waited for it), and fetching ahead while a batch runs (Prefetch).
    cast("Any", subscriber).get_msg = prefetch.take
    return subscriber


def _done(result: BatchResult) -> None:
    log.debug(
        "batch_done",
        records=result.records,
        applied=result.applied,
        duplicates=result.duplicates,
        held=result.held,
        rejected=result.rejected,
    )


def _rewind(prefetch: Prefetch, message: KafkaMessage) -> None:
    """The same records come again, from the batch's first offsets."""
    prefetch.rewind(cast("AIOKafkaConsumer", message.consumer), message.raw_message)
