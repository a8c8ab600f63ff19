"""The campaigns an instance owns, kept between batches: a steady batch does not read them
again, and a rebalance, a restart or a lost compare-and-set reads them from MongoDB."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence

import pytest
from pymongo import monitoring

from service.adapters import mongo_schema as cols
from service.adapters.mongo_store import MongoStore
from service.app.outbox import OutboxEntry
from service.app.processor import BatchProcessor
from tests.unit.factories import generated

BOOKKEEPING = {"hello", "ismaster", "endSessions", "ping"}


class Commands(monitoring.CommandListener):
    def __init__(self) -> None:
        self.seen: list[tuple[str, object]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name not in BOOKKEEPING:
            self.seen.append((event.command_name, event.command.get(event.command_name)))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        return None

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        return None

    def take(self) -> list[tuple[str, object]]:
        seen, self.seen = self.seen, []
        return seen


class Recorder:
    def __init__(self) -> None:
        self.sent: list[OutboxEntry] = []

    async def publish(self, entries: Sequence[OutboxEntry]) -> None:
        self.sent.extend(entries)

    def revisions(self) -> list[int]:
        return [e.revision for e in self.sent if e.kind == "snapshot"]


@pytest.fixture
async def store(mongodb_uri: str) -> AsyncIterator[tuple[MongoStore, Commands]]:
    commands = Commands()
    store = MongoStore.connect(
        mongodb_uri, f"ledger_owned_{uuid.uuid4().hex[:8]}", event_listeners=[commands]
    )
    await store.ensure_schema()
    yield store, commands
    await store.client.drop_database(store.db.name)
    await store.close()


def version(n: int) -> list[object]:
    return [generated("c-own", "c-own.copy", f"c-own.copy.v{n}").record]


def snapshot_reads(seen: list[tuple[str, object]]) -> int:
    return sum(1 for name, collection in seen if name == "find" and collection == cols.CAMPAIGNS)


async def test_a_steady_batch_reads_no_campaign_and_writes_in_one_command(
    store: tuple[MongoStore, Commands],
) -> None:
    mongo, commands = store
    processor = BatchProcessor(mongo, Recorder(), max_event_bytes=1 << 20)
    await processor.process(version(1))
    await processor.marks.settle()
    commands.take()

    await processor.process(version(2))
    seen = commands.take()
    assert snapshot_reads(seen) == 0, seen
    names = [name for name, _ in seen]
    # SecantusDB reports a wire version with the client-level bulkWrite (MongoDB 8.0).
    assert names.count("bulkWrite") == 1, names
    assert names.count("commitTransaction") == 1, names
    # nothing read: one write and the commit
    assert len(names) <= 3, names


async def test_a_batch_above_the_one_command_limit_writes_per_collection(
    mongodb_uri: str,
) -> None:
    commands = Commands()
    mongo = MongoStore.connect(
        mongodb_uri,
        f"ledger_owned_{uuid.uuid4().hex[:8]}",
        one_command_max_writes=1,  # a steady batch here writes a version and its campaign
        event_listeners=[commands],
    )
    try:
        await mongo.ensure_schema()
        processor = BatchProcessor(mongo, Recorder(), max_event_bytes=1 << 20)
        await processor.process(version(1))
        await processor.marks.settle()
        commands.take()
        await processor.process(version(2))
        written = [c for name, c in commands.take() if name in ("insert", "update", "bulkWrite")]
        assert written == [cols.VERSIONS, cols.CAMPAIGNS], written
    finally:
        await mongo.client.drop_database(mongo.db.name)
        await mongo.close()


async def test_a_rebalance_reads_the_campaign_again(store: tuple[MongoStore, Commands]) -> None:
    mongo, commands = store
    processor = BatchProcessor(mongo, Recorder(), max_event_bytes=1 << 20)
    await processor.process(version(1))
    await processor.flush()  # what a revocation does
    commands.take()
    await processor.process(version(2))
    assert snapshot_reads(commands.take()) == 1


async def test_a_lost_compare_and_set_reads_again_and_loses_nothing(
    store: tuple[MongoStore, Commands],
) -> None:
    mongo, _ = store
    first, second = Recorder(), Recorder()
    a = BatchProcessor(mongo, first, max_event_bytes=1 << 20)
    await a.process(version(1))
    # Another instance (after a rebalance this one missed, or this one restarted) writes
    # the campaign: it reads it from MongoDB, not from anything this one kept.
    b = BatchProcessor(mongo, second, max_event_bytes=1 << 20)
    await b.process(version(2))
    # This one's kept state is one revision behind: its write misses, it reads again.
    await a.process(version(3))

    assert first.revisions() == [1, 3]
    # (it may publish revision 1 again: this one's published mark was not due yet)
    assert second.revisions()[-1] == 2
    numbers = [
        doc["version_number"]
        async for doc in mongo.db[cols.VERSIONS].find({"campaign_id": "c-own"}).sort("_id")
    ]
    assert numbers == [1, 2, 3]
    stored = await mongo.db[cols.CAMPAIGNS].find_one({"_id": "c-own"})
    assert stored is not None and stored["revision"] == 3
    assert stored["snapshot"]["artifacts"][0]["version_count"] == 3


async def test_a_producer_duplicate_on_an_owned_campaign_is_applied_once(
    store: tuple[MongoStore, Commands],
) -> None:
    mongo, _ = store
    recorder = Recorder()
    processor = BatchProcessor(mongo, recorder, max_event_bytes=1 << 20)
    first = generated("c-own", "c-own.copy", "c-own.copy.v1")
    await processor.process([first.record])
    again = await processor.process([first.record])  # taken for new, found a duplicate
    other = generated("c-own", "c-own.copy", None)
    await processor.process([other.record, other.record])  # twice in one batch, too

    assert again.duplicates == 1 and again.applied == 0
    assert recorder.revisions() == [1, 2]
    assert await mongo.db[cols.VERSIONS].count_documents({"campaign_id": "c-own"}) == 2
