"""CommandTimer: every command the driver sends is timed under its command and collection."""

from __future__ import annotations

import uuid
from collections import defaultdict

import pytest
from pymongo.errors import DuplicateKeyError, OperationFailure

from service.adapters.mongo_store import MongoStore
from service.adapters.mongo_telemetry import CommandTimer


class Recorded:
    def __init__(self) -> None:
        self.seconds: dict[tuple[str, str], list[float]] = defaultdict(list)

    def labels(self, command: str, collection: str) -> Recorded.Label:
        return Recorded.Label(self.seconds[(command, collection)])

    class Label:
        def __init__(self, into: list[float]) -> None:
            self.into = into

        def observe(self, amount: float) -> None:
            self.into.append(amount)


async def test_each_command_is_timed_by_command_and_collection(mongodb_uri: str) -> None:
    recorded = Recorded()
    store = MongoStore.connect(
        mongodb_uri,
        f"ledger_timer_{uuid.uuid4().hex[:8]}",
        event_listeners=[CommandTimer(recorded)],
    )
    try:
        await store.db.things.insert_many([{"_id": n} for n in range(3)])
        assert await store.db.things.count_documents({}) == 3
        await store.db.things.find_one({"_id": 1})
        with pytest.raises(DuplicateKeyError):
            await store.db.things.insert_one({"_id": 1})  # refused, and timed too
        with pytest.raises(OperationFailure):
            await store.db.command("noSuchCommand")  # a failed command
    finally:
        await store.client.drop_database(store.db.name)
        await store.close()
    assert len(recorded.seconds[("insert", "things")]) == 2
    assert recorded.seconds[("find", "things")]
    assert recorded.seconds[("aggregate", "things")]  # count_documents
    assert recorded.seconds[("noSuchCommand", "")]
    assert all(s >= 0 for times in recorded.seconds.values() for s in times)
