"""The operations commands' pure parts: which dead letters a replay chooses and sends, and
how an export is checked, compared and turned back into the campaign's state."""

from __future__ import annotations

import base64
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from service.adapters.mongo_schema import ENTITY_COLLECTIONS
from service.app.export import dumps
from service.app.replay import (
    REPLAYED_FROM,
    DeadLetter,
    NotReplayable,
    Selection,
    parse_dead_letter,
    replay_of,
)
from service.app.restore import (
    IMPORT_WRITER,
    Export,
    InvalidExport,
    RestoreConflict,
    Stored,
    campaign_state,
    load_export,
    plan_restore,
    restore,
)
from tests.unit import factories as f
from tests.unit.memory_store import MemoryStore, deliver, one_by_one


def letter(**data: Any) -> DeadLetter:
    base = {"reason": "held_too_long", "topic": "in.audit", "key": "c-1", "value": '{"a":1}'}
    return DeadLetter("dlq", 2, 7, datetime(2026, 1, 2, tzinfo=UTC), {**base, **data})


def test_replay_sends_the_original_key_value_and_headers_plus_provenance() -> None:
    raw = b"\xff\x00binary"
    replay = replay_of(
        letter(
            value=None,
            value_base64=base64.b64encode(raw).decode(),
            headers=[
                {"name": "ce_id", "value": "e-1"},
                {"name": "blob", "value_base64": base64.b64encode(b"\x80").decode()},
                {"name": REPLAYED_FROM, "value": "dlq:0:1"},  # from an earlier replay
            ],
        )
    )
    assert (replay.topic, replay.key, replay.value) == ("in.audit", b"c-1", raw)
    assert replay.headers == (("ce_id", b"e-1"), ("blob", b"\x80"), (REPLAYED_FROM, b"dlq:2:7"))


def test_replay_of_an_older_dead_letter_without_headers_or_key() -> None:
    replay = replay_of(letter(key=None))
    assert replay.key is None and replay.value == b'{"a":1}'
    assert replay.headers == ((REPLAYED_FROM, b"dlq:2:7"),)


@pytest.mark.parametrize(
    "data",
    [
        {"topic": None},
        {"value": None},
        {"value": None, "value_base64": "not base64!"},
        {"headers": [{"name": "x"}]},
        {"headers": ["x"]},
    ],
)
def test_what_cannot_be_replayed_says_why(data: dict[str, Any]) -> None:
    with pytest.raises(NotReplayable):
        replay_of(letter(**data))


def test_selection_by_reason_time_topic_and_campaign() -> None:
    one = letter()
    assert Selection().matches(one)
    assert Selection(reasons=frozenset({"held_too_long", "x"})).matches(one)
    assert not Selection(reasons=frozenset({"not_json"})).matches(one)
    assert Selection(since=datetime(2026, 1, 2, tzinfo=UTC)).matches(one)
    assert not Selection(since=datetime(2026, 1, 3, tzinfo=UTC)).matches(one)
    assert not Selection(topics=frozenset({"in.feedback"})).matches(one)
    assert Selection(campaigns=frozenset({"c-1"})).matches(one)
    keyless = letter(key=None, value='{"data": {"campaign_id": "c-9"}}')
    assert Selection(campaigns=frozenset({"c-9"})).matches(keyless)
    assert not Selection(campaigns=frozenset({"c-9"})).matches(letter(key=None, value="["))


def test_only_dead_letters_are_parsed() -> None:
    assert parse_dead_letter("dlq", 0, 1, b"not json") is None
    assert parse_dead_letter("dlq", 0, 1, b'{"data": 1}') is None
    parsed = parse_dead_letter("dlq", 0, 1, b'{"time": "2026-01-02T00:00:00Z", "data": {}}')
    assert parsed is not None and parsed.time == datetime(2026, 1, 2, tzinfo=UTC)
    assert parsed.listing() == {"dead_letter": "dlq:0:1", "time": "2026-01-02T00:00:00Z"}


# ---- export -> state -------------------------------------------------------------------


def ledger_export(store: MemoryStore, campaign: str) -> Export:
    """What `export` writes for a campaign the rules stored (as JSON, through the export's
    own encoder)."""
    collections = {
        "campaigns": store.campaigns,
        "artifacts": store.artifacts,
        "versions": store.version_records,
        "audit_reports": store.audit_reports,
        "iteration_logs": store.iteration_logs,
        "orchestration_runs": store.runs,
    }
    document: dict[str, Any] = {"campaign_id": campaign}
    for name, docs in collections.items():
        key = "_id" if name == "campaigns" else "campaign_id"
        document[name] = [
            {"_id": doc_id, **doc} for doc_id, doc in sorted(docs.items()) if doc[key] == campaign
        ]
    return load_export(dumps(document))


def full_flow(campaign: str) -> list[Any]:
    art, vis = f"{campaign}.copy", f"{campaign}.visual"
    return [
        f.created(campaign, brief={"tone": "warm"}),
        f.run_started(campaign, "r-1", execution_mode="parallel"),
        f.audited(campaign, f"{art}.v1", "error", error="timeout"),  # held, then attached
        f.generated(campaign, art, f"{art}.v1", run_id="r-1"),
        f.generated(campaign, vis, f"{vis}.v1", artifact_type="visual_concept"),
        f.audited(campaign, f"{art}.v1", "fail"),
        f.feedback(campaign, art, f"{art}.v1"),
        f.generated(campaign, art, f"{art}.v2", parent_version_id=f"{art}.v1"),
        f.audited(campaign, f"{art}.v2", "pass"),
        f.approved(campaign, f"{art}.v2"),
        f.archived(campaign, f"{art}.v2"),  # the active version goes back to v1
        f.archived(campaign, f"{vis}.v1"),  # no active version left
        f.run_completed(campaign, "r-1", status="failed", error="one agent crashed"),
        f.status_changed(campaign, "completed"),
        f.delete_requested(campaign),
    ]


def test_state_rebuilt_from_the_documents_is_the_state_the_rules_stored() -> None:
    store = MemoryStore()
    deliver(store, one_by_one(full_flow("c-1")))
    stored = store.campaign_states["c-1"]
    rebuilt = campaign_state(ledger_export(store, "c-1"), stored.revision)
    assert rebuilt.snapshot() == stored.snapshot()
    assert rebuilt.private() == stored.private()


def test_an_older_export_loses_what_its_artifacts_repeated_of_their_versions() -> None:
    store = MemoryStore()
    deliver(store, one_by_one(full_flow("c-1")))
    document = orjson.loads(dumps(ledger_export(store, "c-1").documents | {"campaign_id": "c-1"}))
    for doc in document["artifacts"]:  # as artifact documents were written until 2026-12
        doc.update(version_count=99, active_version_id="v-nowhere", updated_at=doc["created_at"])
    export = load_export(orjson.dumps(document))
    assert all(
        not doc.keys() & {"version_count", "active_version_id", "updated_at"}
        for doc in export.documents["artifacts"]
    )
    stored = store.campaign_states["c-1"]
    assert campaign_state(export, stored.revision).snapshot() == stored.snapshot()


def nothing_stored(export: Export, **overrides: Any) -> Stored:
    values: dict[str, Any] = {
        "documents": {name: {} for name in ENTITY_COLLECTIONS},
        "marked": frozenset(),
        "snapshot_revision": None,
        "tombstone": False,
        "purge_pending": False,
        "imported_from_revision": None,
        "held_for_versions": 0,
    }
    return Stored(**{**values, **overrides})


def all_stored(export: Export) -> Stored:
    """This database holds exactly the export (as MongoDB gives it back: times as dates)."""
    documents = {
        name: {doc["_id"]: _dated(doc) for doc in export.documents[name]}
        for name in ENTITY_COLLECTIONS
    }
    return nothing_stored(
        export,
        documents=documents,
        marked=frozenset(export.event_keys()),
        snapshot_revision=export.revision,
    )


def _dated(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        k: datetime.fromisoformat(v) if k.endswith("_at") and isinstance(v, str) else v
        for k, v in doc.items()
    }


def test_plan_into_an_empty_database_inserts_everything_with_the_exported_revision() -> None:
    store = MemoryStore()
    deliver(store, one_by_one(full_flow("c-1")))
    export = ledger_export(store, "c-1")
    plan, renumbered = plan_restore(export, nothing_stored(export))
    assert renumbered is None and plan.state is not None
    assert plan.state.revision == export.revision == store.campaign_states["c-1"].revision
    assert sum(len(docs) for docs in plan.inserts.values()) == export.count()
    assert len(plan.event_keys) == 3 + 3 + 1  # versions, audits, feedback


def test_plan_when_everything_is_there_is_empty() -> None:
    store = MemoryStore()
    deliver(store, one_by_one(full_flow("c-1")))
    export = ledger_export(store, "c-1")
    plan, _ = plan_restore(export, all_stored(export))
    assert plan.is_empty and plan.unchanged == export.count()


def test_a_different_stored_document_is_a_conflict_naming_it() -> None:
    store = MemoryStore()
    deliver(store, one_by_one(full_flow("c-1")))
    export = ledger_export(store, "c-1")
    stored = all_stored(export)
    version = export.documents["versions"][0]
    stored.documents["versions"][version["_id"]] = {**version, "content": {"text": "other"}}
    with pytest.raises(RestoreConflict) as raised:
        plan_restore(export, stored)
    assert (raised.value.collection, raised.value.doc_id) == ("versions", version["_id"])
    assert "content" in raised.value.detail


def test_a_purged_campaign_of_the_same_id_pushes_the_revision_past_its_last() -> None:
    store = MemoryStore()
    deliver(store, one_by_one(full_flow("c-1")))
    export = ledger_export(store, "c-1")
    tombstone = nothing_stored(export, tombstone=True, snapshot_revision=export.revision + 4)
    plan, renumbered = plan_restore(export, tombstone)
    assert renumbered == export.revision
    assert plan.state is not None and plan.state.revision == export.revision + 5
    assert plan.inserts["campaigns"][0]["revision"] == export.revision + 5
    lower = nothing_stored(export, tombstone=True, snapshot_revision=export.revision - 1)
    plan, renumbered = plan_restore(export, lower)
    assert renumbered is None and plan.state is not None
    assert plan.state.revision == export.revision


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (b"[", "not JSON"),
        (b"[]", "no campaign_id"),
        (b'{"campaign_id": "c-1"}', "campaigns is not a list"),
    ],
)
def test_what_is_not_an_export_is_refused(document: bytes, message: str) -> None:
    with pytest.raises(InvalidExport, match=message):
        load_export(document)


def test_an_export_mixing_campaigns_is_refused() -> None:
    store = MemoryStore()
    deliver(store, one_by_one(full_flow("c-1")))
    document = orjson.loads(dumps(ledger_export(store, "c-1").documents | {"campaign_id": "c-1"}))
    document["versions"][0]["campaign_id"] = "c-2"
    with pytest.raises(InvalidExport, match="belongs to campaign 'c-2'"):
        load_export(orjson.dumps(document))
    del document["versions"][0]
    with pytest.raises(InvalidExport, match=r"incomplete export.*lacks some of its versions"):
        load_export(orjson.dumps(document))


# ---- publication after the commit (at least once) ----------------------------------------


class FakeRestoreStore:
    """The restore use case's store: one stored state, and what the use case did to it."""

    def __init__(self, stored: Stored) -> None:
        self.stored = stored
        self.written: list[tuple[list[Any], str]] = []
        self.confirmed: list[tuple[str, str]] = []

    async def in_transaction(self, work: Any) -> Any:
        return await work(self)

    async def read(self, export: Export) -> Stored:
        return self.stored

    async def write(
        self, export: Export, plan: Any, outbox: list[Any], now: datetime, **kw: Any
    ) -> None:
        self.written.append((outbox, kw["writer"]))

    async def pending_outbox(self, campaign_ids: Any) -> list[Any]:
        return []

    async def delete_outbox(self, entries: Any) -> None:
        return None

    async def confirm_published(self, campaign_id: str, writer: str) -> None:
        self.confirmed.append((campaign_id, writer))


class FakePublisher:
    def __init__(self) -> None:
        self.sent: list[Any] = []

    async def publish(self, entries: Any) -> None:
        self.sent.extend(entries)


async def test_an_import_publishes_its_snapshot_then_confirms_it() -> None:
    store = MemoryStore()
    deliver(store, one_by_one(full_flow("c-1")))
    export = ledger_export(store, "c-1")
    fake, publisher = FakeRestoreStore(nothing_stored(export)), FakePublisher()
    result = await restore(fake, publisher, export)
    [(outbox, writer)] = fake.written
    assert writer.startswith(IMPORT_WRITER)
    assert [e.revision for e in publisher.sent] == [export.revision] == [result.revision]
    assert publisher.sent == outbox and fake.confirmed == [("c-1", writer)]


async def test_a_reimport_publishes_only_what_an_earlier_import_left_unconfirmed() -> None:
    store = MemoryStore()
    deliver(store, one_by_one(full_flow("c-1")))
    export = ledger_export(store, "c-1")
    fake, publisher = FakeRestoreStore(all_stored(export)), FakePublisher()
    result = await restore(fake, publisher, export)
    assert (result.published, publisher.sent, fake.written, fake.confirmed) == (0, [], [], [])

    left = ["an entry the earlier import could not publish"]
    stored = replace(all_stored(export), unconfirmed=("import:earlier", left))
    fake, publisher = FakeRestoreStore(stored), FakePublisher()
    result = await restore(fake, publisher, export)
    assert fake.written == [] and publisher.sent == left and result.published == 1
    assert fake.confirmed == [("c-1", "import:earlier")]


async def test_a_conflict_writes_and_publishes_nothing() -> None:
    store = MemoryStore()
    deliver(store, one_by_one(full_flow("c-1")))
    export = ledger_export(store, "c-1")
    stored = all_stored(export)
    campaign = export.documents["campaigns"][0]
    stored.documents["campaigns"]["c-1"] = {**_dated(campaign), "status": "draft"}
    fake, publisher = FakeRestoreStore(stored), FakePublisher()
    with pytest.raises(RestoreConflict, match="campaigns/c-1"):
        await restore(fake, publisher, export)
    assert fake.written == [] and publisher.sent == []
