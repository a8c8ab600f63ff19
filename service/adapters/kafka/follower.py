"""Follows the snapshot and dead-letter topics once per instance, for the streams and console.

A plain aiokafka consumer without a consumer group: every instance reads every partition
(each must see every campaign, whichever instance processed its events), nothing is
committed, and it starts at the end of the snapshot topic (a stream's first message comes
from the stored snapshot, not from history). Dead letters start one hour back, so the console
shows the last hour's even right after a start.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import orjson
import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from faststream.kafka.security import parse_security

from service.adapters.kafka.broker import security_from
from service.adapters.kafka.fetching import fetch_when_taken
from service.app import telemetry
from service.app.streams import RecentDeadLetters, Snapshot, SnapshotFeed
from service.settings import Settings

log = structlog.get_logger(__name__)


class OutputTopicsFollower:
    def __init__(
        self, settings: Settings, feed: SnapshotFeed, dead_letters: RecentDeadLetters
    ) -> None:
        self.settings = settings
        self.feed = feed
        self.dead_letters = dead_letters
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        s = self.settings
        consumer = AIOKafkaConsumer(
            bootstrap_servers=s.kafka_bootstrap_servers,
            group_id=None,
            client_id="campaign-ledger-feed",
            enable_auto_commit=False,
            auto_offset_reset="latest",
            # With fetches only when the records are taken, a fetch covers every partition
            # and is answered when any has a record: the long poll delays nothing.
            fetch_max_wait_ms=s.kafka_fetch_max_wait_ms,
            **parse_security(security_from(s)),
        )
        await consumer.start()
        fetch_when_taken(consumer)
        try:
            await self._await_topics(consumer)
            # Without a group, subscribing assigns every partition of both topics (and any
            # added later) as soon as their metadata is known.
            consumer.subscribe([s.topic_snapshot_updated, s.topic_dead_letter])
            snapshot_parts, dead_parts = await self._assigned(consumer)
            await consumer.seek_to_end(*snapshot_parts)
            hour_ago = int((time.time() - self.dead_letters.window_seconds) * 1000)
            offsets = await consumer.offsets_for_times(dict.fromkeys(dead_parts, hour_ago))
            for partition in dead_parts:
                found = offsets.get(partition)
                if found is None:
                    await consumer.seek_to_end(partition)
                else:
                    consumer.seek(partition, found.offset)
            # Resolve the positions now: what is published from here on is not missed.
            for partition in snapshot_parts + dead_parts:
                await consumer.position(partition)
        except BaseException:
            await consumer.stop()
            raise
        self._consumer = consumer
        self._task = asyncio.create_task(self._follow(consumer), name="snapshot-feed")
        log.info("feed_started", partitions=len(snapshot_parts) + len(dead_parts))

    async def _await_topics(self, consumer: AIOKafkaConsumer, timeout: float = 30.0) -> None:
        """Wait until both topics exist before naming them to the broker.

        A subscription names its topics in metadata requests, which aiokafka sends allowing
        auto-creation: on a broker with `auto.create.topics.enable` an `--role api` instance
        started before any consumer would create the snapshot topic uncompacted. Listing
        every topic (what `topics()` asks) creates nothing; the consumer role or the platform
        team creates them (KAFKA_CREATE_TOPICS).
        """
        wanted = {self.settings.topic_snapshot_updated, self.settings.topic_dead_letter}
        deadline = time.monotonic() + timeout
        while missing := sorted(wanted - await consumer.topics()):
            if time.monotonic() > deadline:
                msg = f"Kafka topics missing after {timeout:.0f} s: {', '.join(missing)}"
                raise RuntimeError(msg)
            log.info("feed_waiting_for_topics", missing=missing)
            await asyncio.sleep(1.0)

    async def _assigned(
        self, consumer: AIOKafkaConsumer, timeout: float = 30.0
    ) -> tuple[list[TopicPartition], list[TopicPartition]]:
        deadline = time.monotonic() + timeout
        topics = (self.settings.topic_snapshot_updated, self.settings.topic_dead_letter)
        while True:
            assigned = consumer.assignment()
            found = [sorted(tp for tp in assigned if tp.topic == topic) for topic in topics]
            if all(found):
                return found[0], found[1]
            if time.monotonic() > deadline:
                msg = f"no partitions of {topics} were assigned within {timeout} s"
                raise RuntimeError(msg)
            await asyncio.sleep(0.05)

    async def _follow(self, consumer: AIOKafkaConsumer) -> None:
        snapshot_topic = self.settings.topic_snapshot_updated
        while True:
            try:
                batches = await consumer.getmany(timeout_ms=1000, max_records=5000)
            except KafkaError as error:  # the client reconnects by itself; keep following
                log.warning("feed_fetch_failed", error=str(error))
                await asyncio.sleep(1.0)
                continue
            for partition, records in batches.items():
                for record in records:
                    try:
                        if partition.topic == snapshot_topic:
                            delay = time.time() - record.timestamp / 1000
                            telemetry.FEED_DELAY.observe(max(0.0, delay))
                            self._snapshot(record.value)
                        else:
                            self._dead_letter(record.value, record.timestamp)
                    except Exception:  # one odd record must not end the feed for everyone
                        log.exception(
                            "feed_record_skipped", topic=partition.topic, offset=record.offset
                        )

    def _snapshot(self, value: bytes | None) -> None:
        event = _event(value)
        data = _data(event)
        if data is None or not isinstance(data.get("campaign_id"), str):
            return
        if not isinstance(data.get("revision"), int):
            return
        traceparent = event.get("traceparent")
        traceparent = traceparent if isinstance(traceparent, str) else None
        self.feed.published(Snapshot.of(data, traceparent=traceparent))

    def _dead_letter(self, value: bytes | None, timestamp_ms: int) -> None:
        data = _data(_event(value))
        if data is not None:
            self.dead_letters.add(timestamp_ms / 1000, data)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()


def _event(value: bytes | None) -> dict[str, Any]:
    """A CloudEvent this service published (structured mode); empty when it is not one."""
    try:
        event = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return {}
    return event if isinstance(event, dict) else {}


def _data(event: dict[str, Any]) -> dict[str, Any] | None:
    data = event.get("data")
    return data if isinstance(data, dict) else None
