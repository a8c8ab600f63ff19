"""Kafka at the edge: the FastStream broker, raw-record parsing and the outbox publisher."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import ssl
import sys
from collections.abc import Sequence
from typing import Any, cast

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    TopicAlreadyExistsError,
    for_code,
)
from aiokafka.partitioner import DefaultPartitioner, murmur2
from faststream.kafka import KafkaBroker
from faststream.kafka.message import KafkaMessage
from faststream.kafka.security import parse_security
from faststream.message import StreamMessage
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

from service.adapters.mongo_store import OutboxEntry
from service.domain.events import EventRejectedEvent, SnapshotUpdatedEvent
from service.domain.ingest import RawRecord
from service.settings import Settings

CLOUDEVENTS_JSON = "application/cloudevents+json"

log = structlog.get_logger(__name__)


def security_from(settings: Settings) -> BaseSecurity | None:
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    context = None
    if protocol in {"SSL", "SASL_SSL"}:
        context = ssl.create_default_context(cafile=settings.kafka_ssl_cafile)
    if protocol == "SSL":
        return BaseSecurity(ssl_context=context, use_ssl=True)
    username = settings.kafka_sasl_username or ""
    password = (
        settings.kafka_sasl_password.get_secret_value() if settings.kafka_sasl_password else ""
    )
    use_ssl = protocol == "SASL_SSL"
    mechanism = settings.kafka_sasl_mechanism or "PLAIN"
    if mechanism == "SCRAM-SHA-256":
        return SASLScram256(username, password, ssl_context=context, use_ssl=use_ssl)
    if mechanism == "SCRAM-SHA-512":
        return SASLScram512(username, password, ssl_context=context, use_ssl=use_ssl)
    return SASLPlaintext(username, password, ssl_context=context, use_ssl=use_ssl)


class MissingTopics(RuntimeError):
    """Topics the service needs are not there (or this user may not DESCRIBE them)."""

    def __init__(self, missing: Sequence[str]) -> None:
        self.missing = tuple(missing)
        super().__init__(
            f"Kafka topics missing: {', '.join(self.missing)}. KAFKA_CREATE_TOPICS is false, "
            "so the service does not create them: create them (or grant this user DESCRIBE "
            "on them) and start again."
        )


# The snapshot topic is a changelog keyed by campaign id: compaction keeps every campaign's
# latest snapshot, so a new reader rebuilds the whole state from it.
SNAPSHOT_TOPIC_CONFIG = {"cleanup.policy": "compact"}


def topic_configs(settings: Settings) -> dict[str, dict[str, str]]:
    """The six topics, each with the configuration it is created with."""
    configs: dict[str, dict[str, str]] = {name: {} for name in settings.input_topics}
    configs[settings.topic_snapshot_updated] = dict(SNAPSHOT_TOPIC_CONFIG)
    configs[settings.topic_dead_letter] = {}
    return configs


async def ensure_topics(broker: KafkaBroker, settings: Settings) -> None:
    """Make sure the six topics exist, before any consumer or producer asks for them.

    Called after ``broker.connect()`` and before ``broker.start()``. Existence is read from
    the cluster metadata of all topics this user may DESCRIBE (``list_topics``): no other
    right is needed, and unlike a metadata request naming the topics (``describe_topics``,
    which aiokafka sends with ``allow_auto_topic_creation``) it cannot create anything.
    Missing topics are created with ``KAFKA_CREATE_TOPICS`` (existing ones are never
    altered); without it the service logs them, says so on stderr and refuses to start.
    """
    admin = broker.config.broker_config.admin.client
    wanted = topic_configs(settings)
    existing = set(await admin.list_topics())
    missing = [name for name in wanted if name not in existing]
    if not missing:
        return
    if not settings.kafka_create_topics:
        error = MissingTopics(missing)
        log.error("kafka_topics_missing", missing=missing, create_topics=False)
        print(f"campaign-ledger: {error}", file=sys.stderr)
        raise error
    response = await admin.create_topics(
        [
            NewTopic(
                name,
                num_partitions=settings.kafka_topic_partitions,
                replication_factor=settings.kafka_topic_replication_factor,
                topic_configs=wanted[name],
            )
            for name in missing
        ]
    )
    for entry in response.to_object()["topic_errors"]:
        code = entry["error_code"]
        if code:
            error_type = for_code(code)
            if error_type is TopicAlreadyExistsError:
                continue  # another instance created it meanwhile
            raise error_type(f"creating topic {entry['topic']}: {entry.get('error_message')}")
    await _wait_for_leaders(admin, missing)
    log.info(
        "kafka_topics_created",
        topics=missing,
        partitions=settings.kafka_topic_partitions,
        replication_factor=settings.kafka_topic_replication_factor,
    )


async def _wait_for_leaders(
    admin: AIOKafkaAdminClient, topics: Sequence[str], timeout: float = 30.0
) -> None:
    """Return once every partition of the new ``topics`` has a leader in the metadata.

    The controller answers CreateTopics before every broker has the new metadata; consumers
    that subscribe right after would otherwise find no partitions. (A metadata request naming
    topics may auto-create them: fine here, they exist and this user may create.)
    """
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        described = await admin.describe_topics(list(topics))
        if all(
            topic["error_code"] == 0
            and topic["partitions"]
            and all(p["error_code"] == 0 and p["leader"] >= 0 for p in topic["partitions"])
            for topic in described
        ):
            return
        if asyncio.get_running_loop().time() > deadline:
            raise KafkaTimeoutError(f"new topics {list(topics)} have no leaders after {timeout}s")
        await asyncio.sleep(0.1)


# How every producer of the service sends (FastStream's and the outbox publisher's own).
PRODUCER_OPTIONS: dict[str, Any] = {
    "client_id": "campaign-ledger",
    # Snapshots and dead letters must not be lost or reordered by producer retries.
    "acks": "all",
    "enable_idempotence": True,
    # No lingering: a batch's messages are all handed over before the sender runs, so they
    # leave in one request anyway; 5 ms of linger was 5 ms on every live event.
    "linger_ms": 0,
    # zstd, not lz4: aiokafka compresses lz4 at level 9 (LZ4HC), which took ~7 % of the
    # service's CPU with every revision published; zstd at its level 3 is faster and smaller.
    # Every mainstream client reads both (the contract lists all four codecs).
    "compression_type": "zstd",
    # Up to 512 KiB per partition in one produce request: a batch publishing thousands of
    # snapshot revisions costs the broker tens of requests, not hundreds (issue 9).
    "max_batch_size": 512 * 1024,
}


def build_broker(settings: Settings) -> KafkaBroker:
    return KafkaBroker(
        # A list: FastStream takes one string as one address, "a:9092,b:9092" included.
        settings.kafka_servers,
        security=security_from(settings),
        **PRODUCER_OPTIONS,
        # broker.stop() waits this long for the batch in flight (the shutdown budget).
        graceful_timeout=settings.kafka_shutdown_timeout_seconds,
        # Our logger, so FastStream's lines go through the structured handler; its per-batch
        # "Received"/"Processed" lines at DEBUG, where they belong at this rate.
        logger=logging.getLogger("campaign_ledger.kafka"),
        log_level=logging.DEBUG,
        description="campaign-ledger: versioned, audited memory of AI-generated campaigns",
    )


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


# Longer than any batch: see `fetch_when_taken`.
HOLD_FETCHES_SECONDS = 24 * 3600.0


def fetch_when_taken(consumer: AIOKafkaConsumer) -> None:
    """Fetch again when a batch takes the fetched records, not while it runs.

    aiokafka keeps one fetch in flight per broker. Records fetched and not yet taken hold
    the next fetch to their broker back for 100 ms (its `prefetch_backoff`, which
    AIOKafkaConsumer does not expose); after that it fetches the broker's other partitions,
    and the broker holds that fetch up to `fetch_max_wait_ms` when they are idle. So during
    any batch longer than 100 ms it polled the idle partitions once per `fetch_max_wait_ms`
    (each poll of 24 partitions cost about 1 ms of CPU here, and the broker's CPU too), and
    when the batch ended, the partitions it had taken could not be fetched before that
    poll came back.

    The handler takes everything fetched at each poll (up to `max_records`), so fetching
    during the batch gains nothing. Holding fetches until the records are taken, the fetch
    goes out the moment a batch takes them (the fetcher wakes on it) and covers every
    partition of the broker; the broker answers it as soon as any of them has a record, so
    a long `fetch_max_wait_ms` delays no record and an idle consumer polls seldom.
    """
    fetcher = getattr(consumer, "_fetcher", None)
    if fetcher is not None and getattr(fetcher, "_prefetch_backoff", None) != HOLD_FETCHES_SECONDS:
        fetcher._prefetch_backoff = HOLD_FETCHES_SECONDS  # aiokafka's own: see above


async def top_up(message: KafkaMessage, max_records: int, timeout_ms: int) -> None:
    """Add to a batch what reached the broker since its records were fetched.

    aiokafka sends no fetch to a broker while records of its partitions wait unconsumed
    (up to 100 ms), so a batch holds what the first fetch after the previous batch found:
    the records that arrived later in that batch's time waited one more batch (measured: a
    record's wait was two batch times at 100 events/s). Taking the batch sent the next
    fetch already; its answer joins the batch, whose acknowledgement and rewind cover it.
    """
    room = max_records - len(message.raw_message)
    if room <= 0 or timeout_ms <= 0:
        return
    consumer = cast("AIOKafkaConsumer", message.consumer)
    try:
        fetched = await consumer.getmany(timeout_ms=timeout_ms, max_records=room)
    except KafkaError as error:
        # aiokafka raises a fetch error only when it hands out no records: nothing is
        # taken, the batch goes as it is and the next poll meets the error again.
        log.warning("top_up_skipped", error=str(error))
        return
    for records in fetched.values():
        message.raw_message += tuple(records)


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


@functools.lru_cache(maxsize=65536)
def _key_hash(key: bytes) -> int:
    return int(murmur2(key)) & 0x7FFFFFFF


def same_partition_as_kafka(
    key: bytes | None, all_partitions: list[int], available: list[int]
) -> int:
    """Kafka's default partitioner (murmur2 of the key, as every Kafka client has it), with
    each key's hash remembered: the same campaigns come back batch after batch, and
    aiokafka's murmur2 is pure Python (~3.5 µs a message)."""
    if key is None:
        return int(DefaultPartitioner()(key, all_partitions, available))
    return all_partitions[_key_hash(key) % len(all_partitions)]


class KafkaPublisher:
    """Sends outbox entries to the snapshot and dead letter topics, keyed by campaign.

    It sends through an aiokafka producer of its own (`start`, `stop`), with the options of
    FastStream's: FastStream's publish path (a correlation id, a command and its middlewares
    per message) cost ~37 µs of CPU per message, a fifth of the service's CPU per event when
    every revision is published. The two FastStream publishers document the topics in the
    AsyncAPI document.
    """

    def __init__(self, broker: KafkaBroker, settings: Settings) -> None:
        self.settings = settings
        self.topics = {
            "snapshot": settings.topic_snapshot_updated,
            "dead_letter": settings.topic_dead_letter,
        }
        self.producer: AIOKafkaProducer | None = None
        self.publishers = {
            "snapshot": broker.publisher(
                settings.topic_snapshot_updated,
                schema=SnapshotUpdatedEvent,
                title="campaign-ledger/snapshot-updated",
                description="The whole campaign snapshot after each change, keyed by "
                "campaign id; `data.revision` is 1, 2, 3 ... per campaign.",
            ),
            "dead_letter": broker.publisher(
                settings.topic_dead_letter,
                schema=EventRejectedEvent,
                title="campaign-ledger/dead-letter",
                description="Records that could not be applied, with the reason and the "
                "original value.",
            ),
        }

    async def start(self) -> None:
        # Made here, not in __init__: aiokafka binds a producer to the running event loop.
        producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.kafka_servers,
            **PRODUCER_OPTIONS,
            **parse_security(security_from(self.settings)),
        )
        await producer.start()
        self.producer = producer

    async def stop(self) -> None:
        producer, self.producer = self.producer, None
        if producer is not None:
            await producer.stop()

    async def publish(self, entries: Sequence[OutboxEntry]) -> None:
        """Send each entry to its topic, keyed, in order per partition; return once Kafka has
        acknowledged them all.

        The records go as one record batch per partition (aiokafka's `create_batch` and
        `send_batch`), placed by Kafka's default partitioner as `send` would place them:
        `send` costs a coroutine, a future and a metadata object per message, about a tenth
        of the service's CPU with every revision published. A partition's batches are sent
        in order, and with idempotence on, retries cannot reorder them.
        """
        if not entries:
            return
        producer = self.producer
        if producer is None:
            raise KafkaConnectionError("the outbox publisher is not started")
        partitions: dict[str, list[int]] = {}
        records: dict[tuple[str, int], list[tuple[bytes | None, bytes]]] = {}
        for entry in entries:
            topic = self.topics[entry.kind]
            if topic not in partitions:
                partitions[topic] = sorted(await producer.partitions_for(topic))
            key = entry.key.encode("utf-8") if entry.key is not None else None
            partition = same_partition_as_kafka(key, partitions[topic], partitions[topic])
            records.setdefault((topic, partition), []).append((key, entry.value))
        acknowledged = []
        for (topic, partition), items in records.items():
            send = functools.partial(producer.send_batch, topic=topic, partition=partition)
            batch = producer.create_batch()
            for key, value in items:
                if batch.append(key=key, value=value, timestamp=None, headers=_HEADERS) is None:
                    # Full: send it and begin the next, where a first record always fits.
                    acknowledged.append(await send(batch))
                    batch = producer.create_batch()
                    batch.append(key=key, value=value, timestamp=None, headers=_HEADERS)
            acknowledged.append(await send(batch))
        await asyncio.gather(*acknowledged)


_HEADERS = [("content-type", CLOUDEVENTS_JSON.encode())]
