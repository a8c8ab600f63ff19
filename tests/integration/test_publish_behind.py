"""A batch's publication beside the next batch's transaction (SNAPSHOT_PUBLISH_BEHIND): the
next batch commits meanwhile, publishes only after it, waits before writing a campaign being
published, and a publication Kafka refuses is sent again in place or, given up, leaves its
entries for the next reader of the campaign."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any, cast

import pytest
from aiokafka.errors import KafkaConnectionError

from service.adapters import mongo_schema as cols
from service.adapters.mongo_store import MongoStore
from service.app import processor as processing
from service.app.outbox import OutboxEntry
from service.app.processor import BatchProcessor, BatchResult
from service.app.store import Store, StoreRejected
from service.domain.ingest import RawRecord
from tests.unit.factories import generated


class Gate:
    """A publisher whose sends wait for `open` and fail while `refusing`."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.refusing = False
        self.attempts = 0
        self.sent: list[OutboxEntry] = []

    async def publish(self, entries: Sequence[OutboxEntry]) -> None:
        self.attempts += 1
        await self.open.wait()
        if self.refusing:
            raise KafkaConnectionError("the broker is away")
        self.sent.extend(entries)

    def revisions(self) -> list[tuple[str, int]]:
        return [(e.campaign_id, e.revision) for e in self.sent if e.kind == "snapshot"]


@pytest.fixture
async def mongo(mongodb_uri: str) -> AsyncIterator[MongoStore]:
    store = MongoStore.connect(mongodb_uri, f"ledger_behind_{uuid.uuid4().hex[:8]}")
    await store.ensure_schema()
    yield store
    await store.client.drop_database(store.db.name)
    await store.close()


@pytest.fixture
def gated(mongo: MongoStore) -> tuple[Gate, BatchProcessor]:
    """A processor publishing behind, whose sends wait for the gate."""
    gate = Gate()
    return gate, BatchProcessor(mongo, gate, max_event_bytes=1 << 20, publish_behind=True)


def version(campaign: str, n: int) -> list[RawRecord]:
    return [generated(campaign, f"{campaign}.copy", f"{campaign}.copy.v{n}").record]


async def begin(
    processor: BatchProcessor, records: list[RawRecord]
) -> tuple[asyncio.Task[BatchResult], asyncio.Event]:
    """The batch as the consumer runs it: a task, and the moment its transactions are done."""
    stored = asyncio.Event()
    batch = asyncio.create_task(processor.process(records, stored=stored.set))
    await asyncio.wait(
        (batch, asyncio.create_task(stored.wait())), return_when=asyncio.FIRST_COMPLETED
    )
    return batch, stored


async def versions(mongo: MongoStore, campaign: str) -> int:
    return await mongo.db[cols.VERSIONS].count_documents({"campaign_id": campaign})


async def test_the_next_batch_commits_while_the_last_publishes_and_publishes_after_it(
    mongo: MongoStore, gated: tuple[Gate, BatchProcessor]
) -> None:
    gate, processor = gated
    first, stored = await begin(processor, version("c-a", 1))
    assert stored.is_set() and not first.done()  # publishing, held at the gate
    second, stored = await begin(processor, version("c-b", 1))
    assert stored.is_set()  # committed beside the first one's publication
    assert await versions(mongo, "c-b") == 1
    await asyncio.sleep(0.05)
    assert gate.attempts == 1  # the second waits for the first before it sends

    gate.open.set()
    await asyncio.gather(first, second)
    assert gate.revisions() == [("c-a", 1), ("c-b", 1)]


async def test_a_batch_of_a_campaign_being_published_waits_before_writing_it(
    mongo: MongoStore, gated: tuple[Gate, BatchProcessor]
) -> None:
    gate, processor = gated
    first, _ = await begin(processor, version("c-a", 1))
    second = asyncio.create_task(processor.process(version("c-a", 2)))
    await asyncio.sleep(0.1)
    assert await versions(mongo, "c-a") == 1  # its document holds entries in flight

    gate.open.set()
    await asyncio.gather(first, second)
    assert gate.revisions() == [("c-a", 1), ("c-a", 2)]
    assert await versions(mongo, "c-a") == 2


@pytest.fixture
def refused(
    gated: tuple[Gate, BatchProcessor], monkeypatch: pytest.MonkeyPatch
) -> tuple[Gate, BatchProcessor]:
    """A processor whose sends Kafka refuses, retried every few ms."""
    monkeypatch.setattr(processing, "RETRY_FIRST_SECONDS", 0.01)
    gate, _ = gated
    gate.refusing = True
    gate.open.set()
    return gated


async def test_a_refused_publication_is_sent_again_in_place(
    refused: tuple[Gate, BatchProcessor],
) -> None:
    gate, processor = refused
    batch, _ = await begin(processor, version("c-a", 1))
    await asyncio.sleep(0.2)  # 0.01 + 0.02 + 0.04 + ... s between the sends
    assert gate.attempts >= 3 and not batch.done()
    gate.refusing = False
    result = await batch
    assert result.applied == 1
    assert gate.revisions() == [("c-a", 1)]


async def test_a_publication_given_up_fails_its_batch_and_the_next_and_loses_nothing(
    mongo: MongoStore, refused: tuple[Gate, BatchProcessor]
) -> None:
    gate, processor = refused
    first, _ = await begin(processor, version("c-a", 1))
    second, stored = await begin(processor, version("c-b", 1))
    assert stored.is_set()
    processor.give_up_retrying()  # a rebalance or a stop
    for batch in (first, second):
        with pytest.raises(KafkaConnectionError):
            await batch
    assert gate.sent == []
    await processor.flush()

    # The partitions' next owner (here: a restart) gets both batches again, finds their
    # events applied, and publishes what their campaigns' documents still hold.
    gate.refusing = False
    restarted = BatchProcessor(mongo, gate, max_event_bytes=1 << 20, publish_behind=True)
    again = await restarted.process(version("c-a", 1) + version("c-b", 1))
    assert again.revisions == 0  # nothing new
    assert sorted(gate.revisions()) == [("c-a", 1), ("c-b", 1)]
    assert await versions(mongo, "c-a") == 1


class RefusingTwice:
    """The store, refusing its second and third transactions as MongoDB refuses a value it
    cannot store (`StoreRejected`)."""

    def __init__(self, store: MongoStore) -> None:
        self.store = store
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def in_transaction(self, work: Any, **options: Any) -> Any:
        self.calls += 1
        if self.calls in (2, 3):
            raise StoreRejected("a value this server cannot store (test)")
        return await self.store.in_transaction(work, **options)


async def test_a_refused_chunk_publishes_the_chunk_before_it_once(
    mongo: MongoStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(processing, "TRANSACTION_BYTES", 1)  # one event per transaction
    gate = Gate()
    gate.open.set()
    store = RefusingTwice(mongo)
    processor = BatchProcessor(
        cast("Store", store), gate, max_event_bytes=1 << 20, publish_behind=True
    )
    result = await processor.process(version("c-a", 1) + version("c-b", 1) + version("c-c", 1))
    # c-b refused as a chunk, then alone: dead-lettered; the others stored and published once.
    assert result.rejected == 1
    assert gate.revisions() == [("c-a", 1), ("c-c", 1)]
