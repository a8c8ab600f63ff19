"""Kafka at the edge: the FastStream broker, raw-record parsing and the outbox publisher."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import ssl
from collections.abc import Sequence
from typing import Any

import orjson
from aiokafka import ConsumerRecord
from faststream.kafka import KafkaBroker, Topic
from faststream.kafka.message import KafkaMessage
from faststream.message import StreamMessage
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

from service.adapters.mongo_store import OutboxEntry
from service.domain.events import EventRejectedEvent, SnapshotUpdatedEvent
from service.domain.ingest import RawRecord
from service.settings import Settings

CLOUDEVENTS_JSON = "application/cloudevents+json"


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


async def ensure_topics(broker: KafkaBroker, settings: Settings) -> None:
    """Create the output topics when missing (the subscriber creates the input ones)."""
    topics = [
        Topic(name, num_partitions=settings.kafka_topic_partitions)
        for name in (settings.topic_snapshot_updated, settings.topic_dead_letter)
    ]
    for result in await broker.config.broker_config.admin.create_topics(topics):
        if result.error is not None:
            raise result.error


def build_broker(settings: Settings) -> KafkaBroker:
    return KafkaBroker(
        settings.kafka_bootstrap_servers,
        security=security_from(settings),
        client_id="campaign-ledger",
        # Snapshots and dead letters must not be lost or reordered by producer retries.
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        compression_type="lz4",
        graceful_timeout=30.0,
        # Our logger, so FastStream's lines go through the structured handler; its per-batch
        # "Received"/"Processed" lines at DEBUG, where they belong at this rate.
        logger=logging.getLogger("campaign_ledger.kafka"),
        log_level=logging.DEBUG,
        description="campaign-ledger: versioned, audited memory of AI-generated campaigns",
    )


async def tolerant_parser(message: Any, original: Any) -> StreamMessage[Any]:
    """FastStream's batch parser, made safe for header values that are not UTF-8 text.

    The stock parser decodes every header strictly; one bad header would fail the whole batch
    before our code sees it. Headers are advisory here (the contract requires none), so their
    undecodable bytes are replaced; the value itself is untouched.
    """
    records = tuple(
        dataclasses.replace(
            record,
            headers=[
                (name, (value or b"").decode("utf-8", "replace").encode("utf-8"))
                for name, value in record.headers
            ],
        )
        for record in message
    )
    parsed: StreamMessage[Any] = await original(records)
    return parsed


async def raw_values(message: StreamMessage[Any], original: Any) -> list[bytes]:
    """The batch's values as bytes: decoding is ours (service.domain.ingest), not FastStream's."""
    return [record.value or b"" for record in message.raw_message]


def raw_records(message: KafkaMessage) -> list[RawRecord]:
    records: tuple[ConsumerRecord[Any, Any], ...] = message.raw_message
    return [
        RawRecord(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            value=record.value,
        )
        for record in records
    ]


class KafkaPublisher:
    """Sends outbox entries to the snapshot and dead letter topics, keyed by campaign.

    The two FastStream publishers also document those topics in the AsyncAPI document.
    """

    def __init__(self, broker: KafkaBroker, settings: Settings) -> None:
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

    async def publish(self, entries: Sequence[OutboxEntry]) -> None:
        if not entries:
            return
        # Sent without waiting one by one (aiokafka batches them), in order per partition;
        # with idempotence on, retries cannot reorder them. Then wait for every ack.
        pending = [
            await self.publishers[entry.kind].publish(
                orjson.dumps(entry.event),
                key=entry.key.encode("utf-8") if entry.key is not None else None,
                headers={"content-type": CLOUDEVENTS_JSON},
                no_confirm=True,
            )
            for entry in entries
        ]
        await asyncio.gather(*pending)
