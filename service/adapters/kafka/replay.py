"""Kafka for the operations commands: read the dead-letter topic to its end, send records back.

Short-lived clients with the service's own connection and security settings
(`security_from`); the reader joins no consumer group and commits nothing, so listing dead
letters never moves anyone's offsets.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from faststream.kafka.security import parse_security

from service.adapters.kafka.broker import security_from
from service.app.replay import DeadLetter, Replay, parse_dead_letter
from service.settings import Settings

CLIENT_ID = "campaign-ledger-cli"


class KafkaUnavailable(Exception):
    """The cluster cannot be reached, or refused the request."""


def client_options(settings: Settings) -> dict[str, Any]:
    return {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "client_id": CLIENT_ID,
        **parse_security(security_from(settings)),
    }


class DeadLetterReader:
    """Every record of the dead-letter topic from the beginning to the end it has now."""

    def __init__(self, settings: Settings) -> None:
        self.topic = settings.topic_dead_letter
        self.options = client_options(settings)
        self.consumer = AIOKafkaConsumer(
            group_id=None, enable_auto_commit=False, auto_offset_reset="earliest", **self.options
        )
        self.ends: dict[TopicPartition, int] = {}
        self.total = 0  # records between the beginning and the end, for progress

    async def __aenter__(self) -> DeadLetterReader:
        try:
            partitions = await self._partitions()
            await self.consumer.start()
            assigned = [TopicPartition(self.topic, p) for p in partitions]
            if assigned:
                self.consumer.assign(assigned)
                starts = await self.consumer.beginning_offsets(assigned)
                self.ends = await self.consumer.end_offsets(assigned)
                self.total = sum(self.ends[tp] - starts[tp] for tp in assigned)
                await self.consumer.seek_to_beginning(*assigned)
        except KafkaError as error:
            await self.consumer.stop()
            raise KafkaUnavailable(str(error) or type(error).__name__) from error
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()

    async def _partitions(self) -> list[int]:
        """The topic's partitions; none when it does not exist (nothing was refused yet).

        Asks for every topic's metadata: asking for this one alone would let a broker with
        auto.create.topics.enable create it.
        """
        admin = AIOKafkaAdminClient(**self.options)
        await admin.start()
        try:
            topics = await admin.describe_topics()
        finally:
            await admin.close()
        return sorted(
            p["partition"]
            for topic in topics
            if topic["topic"] == self.topic
            for p in topic["partitions"]
        )

    async def read(self) -> AsyncIterator[DeadLetter | None]:
        """Each record in partition order (None for one that is not a dead letter)."""
        remaining = {tp: end for tp, end in self.ends.items()}
        try:
            for tp in list(remaining):
                if await self.consumer.position(tp) >= remaining[tp]:
                    del remaining[tp]
            while remaining:
                batches = await self.consumer.getmany(*remaining, timeout_ms=1000)
                for tp, records in batches.items():
                    for record in records:
                        if record.offset < self.ends[tp]:
                            yield parse_dead_letter(
                                record.topic, record.partition, record.offset, record.value
                            )
                for tp in list(remaining):
                    if await self.consumer.position(tp) >= remaining[tp]:
                        del remaining[tp]
        except KafkaError as error:
            raise KafkaUnavailable(str(error) or type(error).__name__) from error


class ReplayProducer:
    """Sends records with acks=all and idempotence: no loss, no reordering by retries."""

    def __init__(self, settings: Settings) -> None:
        self.producer = AIOKafkaProducer(
            acks="all", enable_idempotence=True, linger_ms=5, **client_options(settings)
        )

    async def __aenter__(self) -> ReplayProducer:
        try:
            await self.producer.start()
        except KafkaError as error:
            await self.producer.stop()
            raise KafkaUnavailable(str(error) or type(error).__name__) from error
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.producer.stop()

    async def send(
        self, replays: Sequence[Replay], on_acked: Callable[[Replay], None] = lambda _: None
    ) -> int:
        """Send all, in order, then wait for every acknowledgement; the count acknowledged."""

        async def acked(replay: Replay, delivery: asyncio.Future[Any]) -> None:
            await delivery
            on_acked(replay)

        try:
            pending = [
                acked(
                    replay,
                    await self.producer.send(
                        replay.topic,
                        replay.value,
                        key=replay.key,
                        headers=list(replay.headers),
                    ),
                )
                for replay in replays
            ]
            await asyncio.gather(*pending)
        except KafkaError as error:
            raise KafkaUnavailable(str(error) or type(error).__name__) from error
        return len(replays)
