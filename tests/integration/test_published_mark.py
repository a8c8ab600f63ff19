"""The published mark: written at most once a second while batches run, at once on a flush."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import pytest

from service.adapters import mongo_schema as cols
from service.adapters.mongo_store import MongoStore
from service.app import outbox as outbox_module
from service.app.outbox import OutboxEntry
from service.app.processor import BatchProcessor
from tests.unit.factories import generated


class Recorder:
    def __init__(self) -> None:
        self.sent: list[OutboxEntry] = []

    async def publish(self, entries: Sequence[OutboxEntry]) -> None:
        self.sent.extend(entries)


async def _marked(store: MongoStore, writer: str) -> int | None:
    doc = await store.db[cols.PUBLISHERS].find_one({"_id": writer})
    return None if doc is None else int(doc["published_batch"])


async def test_the_mark_waits_for_its_interval_and_a_flush_writes_it(
    mongodb_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = MongoStore.connect(mongodb_uri, f"ledger_mark_{uuid.uuid4().hex[:8]}")
    try:
        await store.ensure_schema()
        recorder = Recorder()
        processor = BatchProcessor(store, recorder, max_event_bytes=1 << 20)
        monkeypatch.setattr(outbox_module, "MARK_INTERVAL_SECONDS", 3600.0)

        for n in (1, 2, 3):
            event = generated("c-mark", "c-mark.copy", f"c-mark.copy.v{n}")
            await processor.process([event.record])
            await processor.marks.settle()
        assert len(recorder.sent) == 3
        # The first batch's mark went out at once; the next two came within the interval.
        assert await _marked(store, processor.marks.writer) == 1

        await processor.flush()  # what a rebalance and a stop do
        assert await _marked(store, processor.marks.writer) == 3

        monkeypatch.setattr(outbox_module, "MARK_INTERVAL_SECONDS", 0.0)
        event = generated("c-mark", "c-mark.copy", "c-mark.copy.v4")
        await processor.process([event.record])
        await processor.marks.settle()
        assert await _marked(store, processor.marks.writer) == 4
    finally:
        await store.client.drop_database(store.db.name)
        await store.close()
