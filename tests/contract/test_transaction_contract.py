"""One contract, two stores: the in-memory store of the unit tests and the MongoDB `Transaction`.

The unit tests of the rules run on `tests/unit/memory_store.py`; these checks run the same
batches through both stores and hold them to the same observable behaviour (what a `View`
loads back, which writes are refused and what a refused write leaves), so the stand-in
cannot drift from the store it stands in for. Each check sees a store of its own: a fresh
`MemoryStore`, or a fresh database on the test MongoDB (`mongodb_uri`).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import timedelta
from typing import Any, Protocol

import pytest

from service.adapters.mongo_store import MongoStore, Transaction
from service.app.store import ConcurrentUpdate, StoreRejected
from service.domain.ledger import Changes, Inbound, Missing, View, apply_batch, prefetch_keys
from tests.unit import factories as f
from tests.unit import memory_store

C = "c-contract"
NOW = f.BASE_TIME + timedelta(days=1)
MAX_MISSING_ROUNDS = 100


class Store(Protocol):
    """What the rules see of a store: `Transaction`'s reads and its write, one at a time.

    `conflict` is the error of a compare-and-set miss, which the processor answers by reading
    again; `refused`, every error a write may be refused with.
    """

    conflict: type[Exception]
    refused: tuple[type[Exception], ...]

    async def load(self, keys: Mapping[str, set[str]]) -> View: ...

    async def load_missing(self, view: View, missing: Missing) -> None: ...

    async def write(self, view: View, changes: Changes) -> None: ...


class InMemory:
    conflict: type[Exception] = memory_store.ConcurrentUpdate
    refused: tuple[type[Exception], ...] = (
        memory_store.DuplicateKey,
        memory_store.ConcurrentUpdate,
    )

    def __init__(self) -> None:
        self.store = memory_store.MemoryStore()

    async def load(self, keys: Mapping[str, set[str]]) -> View:
        return self.store.load_view(keys)

    async def load_missing(self, view: View, missing: Missing) -> None:
        self.store.fill(view, missing)

    async def write(self, view: View, changes: Changes) -> None:
        self.store.commit(changes, view)


class InMongo:
    """Each call its own transaction, as `MongoStore.in_transaction` runs them."""

    conflict: type[Exception] = ConcurrentUpdate
    # A duplicate key inside a bulk write comes back as StoreRejected, a single one as
    # ConcurrentUpdate (see `classify`).
    refused: tuple[type[Exception], ...] = (ConcurrentUpdate, StoreRejected)

    def __init__(self, store: MongoStore) -> None:
        self.store = store

    async def load(self, keys: Mapping[str, set[str]]) -> View:
        view = View()

        async def work(tx: Transaction) -> None:
            await tx.load(view, keys)

        await self.store.in_transaction(work)
        return view

    async def load_missing(self, view: View, missing: Missing) -> None:
        async def work(tx: Transaction) -> None:
            await tx.load_missing(view, missing)

        await self.store.in_transaction(work)

    async def write(self, view: View, changes: Changes) -> None:
        async def work(tx: Transaction) -> None:
            await tx.write(view, changes, [], NOW)

        await self.store.in_transaction(work)


@pytest.fixture(params=["memory", "mongodb"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    if request.param == "memory":
        yield InMemory()
        return
    uri: str = request.getfixturevalue("mongodb_uri")
    mongo = MongoStore.connect(uri, f"ledger_contract_{uuid.uuid4().hex[:8]}")
    try:
        await mongo.ensure_schema()
        yield InMongo(mongo)
    finally:
        await mongo.client.drop_database(mongo.db.name)
        await mongo.close()


async def decide(store: Store, batch: Sequence[Inbound], seq: int = 1) -> tuple[View, Changes]:
    """What the processor does before its write: prefetch, then the rules until they finish."""
    view = await store.load(prefetch_keys(batch))
    for _ in range(MAX_MISSING_ROUNDS):
        try:
            return view, apply_batch(batch, view, now=NOW, seq_base=seq)
        except Missing as missing:
            await store.load_missing(view, missing)
    raise AssertionError("the rules kept asking for more")


async def commit(store: Store, *batch: Inbound, seq: int = 1) -> Changes:
    view, changes = await decide(store, batch, seq)
    await store.write(view, changes)
    return changes


async def load(store: Store, **keys: Any) -> View:
    return await store.load({kind: set(ids) for kind, ids in keys.items()})


def state_of(view: View, campaign_id: str = C) -> dict[str, Any]:
    state = view.campaigns[campaign_id]
    assert state is not None
    return state.snapshot() | {"private": state.private()}


async def test_keys_never_stored_load_as_looked_up_and_absent(store: Store) -> None:
    view = await load(
        store,
        processed={"test:e-nowhere"},
        campaign={C},
        artifact={"a-nowhere"},
        run={"r-nowhere"},
        version={"v-nowhere"},
        held={"v-nowhere"},
    )
    assert view.checked_events == {"test:e-nowhere"} and view.processed == set()
    assert view.campaigns == {C: None}
    assert view.artifact_owners == {"a-nowhere": None}
    assert view.run_owners == {"r-nowhere": None}
    assert view.versions == {"v-nowhere": None}
    assert view.held == {"v-nowhere": []}


async def test_a_written_batch_loads_back_as_the_rules_left_it(store: Store) -> None:
    changes = await commit(
        store,
        f.created(C),
        f.run_started(C, "r-1"),
        f.generated(C, "a-1", "v-1", run_id="r-1", artifact_type="image"),
        f.audited(C, "v-1", "pass"),
    )
    marked = {key for key, _ in changes.processed}
    assert marked

    view = await load(
        store, processed=marked, campaign={C}, artifact={"a-1"}, run={"r-1"}, version={"v-1"}
    )
    assert view.processed == marked
    written = changes.campaigns[C]
    assert state_of(view) == written.snapshot() | {"private": written.private()}
    assert view.artifact_owners == {"a-1": (C, "image")}
    assert view.run_owners == {"r-1": C}
    version = view.versions["v-1"]
    assert version is not None
    loaded = (version.campaign_id, version.artifact_id, version.version_number)
    assert loaded == (C, "a-1", 1)
    assert (version.audit_state, version.archived, version.approved) == ("passed", False, False)


async def test_an_event_is_marked_processed_once(store: Store) -> None:
    once = Changes(processed=[("test:e-once", C)])
    await store.write(View(), once)
    with pytest.raises(store.refused):
        await store.write(View(), Changes(processed=[("test:e-once", C)]))


async def test_an_insert_with_a_stored_id_or_unique_value_is_refused(store: Store) -> None:
    changes = await commit(store, f.created(C), f.generated(C, "a-1", "v-1"))
    [record] = changes.inserts["version"]

    again = Changes()
    again.insert("version", dict(record))
    with pytest.raises(store.refused):
        await store.write(View(), again)

    same_number = Changes()
    same_number.insert("version", {**record, "_id": "v-other"})
    with pytest.raises(store.refused):
        await store.write(View(), same_number)
    assert (await load(store, version={"v-other"})).versions == {"v-other": None}


async def test_a_campaign_created_twice_is_refused(store: Store) -> None:
    first = await decide(store, [f.created(C, "First")])
    second = await decide(store, [f.created(C, "Second")])
    await store.write(*first)
    with pytest.raises(store.refused):
        await store.write(*second)
    assert state_of(await load(store, campaign={C}))["name"] == "First"


async def test_a_write_from_a_revision_since_changed_is_refused_whole(store: Store) -> None:
    await commit(store, f.created(C), f.generated(C, "a-1", "v-1"))
    winner = await decide(store, [f.status_changed(C, "generating")], seq=10)
    late_event = f.generated(C, "a-2", "v-2")
    late = await decide(store, [f.status_changed(C, "cancelled"), late_event], seq=20)
    await store.write(*winner)

    with pytest.raises(store.conflict):
        await store.write(*late)

    # Nothing of the refused batch is stored: not its version, not its marks.
    marks = {key for key, _ in late[1].processed}
    view = await load(store, campaign={C}, version={"v-2"}, artifact={"a-2"}, processed=marks)
    assert state_of(view)["revision"] == winner[1].campaigns[C].revision
    assert state_of(view)["status"] == "generating"
    assert view.versions == {"v-2": None}
    assert view.artifact_owners == {"a-2": None}
    assert view.processed == set()


async def test_held_events_wait_for_their_version_in_arrival_order(store: Store) -> None:
    await commit(store, f.created(C))
    early = [f.audited(C, "v-1", "fail"), f.audited(C, "v-1", "pass")]
    changes = await commit(store, *early, seq=100)
    assert [h.version_id for h in changes.held] == ["v-1", "v-1"]

    held = (await load(store, held={"v-1"})).held["v-1"]
    assert [h.key for h in held] == [e.event.key for e in early]
    assert [h.seq for h in held] == sorted(h.seq for h in held)

    changes = await commit(store, f.generated(C, "a-1", "v-1"), seq=200)
    assert sorted(changes.released) == sorted(e.event.key for e in early)
    assert (await load(store, held={"v-1"})).held == {"v-1": []}


async def test_a_version_patch_never_creates_the_version(store: Store) -> None:
    changes = Changes()
    changes.patch("version", "v-nowhere", {"archived": True})
    await store.write(View(), changes)
    assert (await load(store, version={"v-nowhere"})).versions == {"v-nowhere": None}


async def test_unarchived_versions_load_highest_first_up_to_the_limit(store: Store) -> None:
    await commit(
        store,
        f.created(C),
        *(f.generated(C, "a-1", f"v-{n}") for n in (1, 2, 3, 4)),
        f.archived(C, "v-3"),
    )
    view = View()
    await store.load_missing(view, Missing("unarchived", "a-1", limit=2, campaign_id=C))
    versions, limit = view.unarchived["a-1"]
    assert [(v.version_id, v.version_number) for v in versions] == [("v-4", 4), ("v-2", 2)]
    assert limit == 2
