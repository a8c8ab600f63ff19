"""The use case behind `campaign-ledger import`: an export document loaded into this database.

Decisions (README "Operations"):
- Every document of the export is stored exactly as exported: same `_id`, numbers, times and
  content; nothing is renumbered. (Artifact documents of older exports lose the fields that
  follow from their versions, DERIVED_ARTIFACT_FIELDS, as stored ones did.) A document
  already stored with the same content is left as it is; one stored with other content is a
  conflict, and the whole import is refused (nothing written) naming the first conflicting
  collection and `_id`.
- The campaign's snapshot is rebuilt from the documents, stored, and published through the
  outbox in the same transaction (at least once, like every snapshot). Its revision is the
  exported one, N: the import changes nothing about what the snapshot shows, so by guarantee
  9 it is not a new revision, and the stream goes on from N (the next event makes N + 1). A
  consumer that already saw N from the old deployment drops it as a duplicate. Only when this
  database once held the same campaign id, purged, at revision T >= N does the restored
  campaign take revision T + 1, so no revision number is ever published twice here.
- Importing the same file again finds every document identical: it writes and publishes
  nothing new (it only publishes a snapshot a previous run stored but could not publish).
- Processed-event marks are restored for the events the documents name (`source_event` of
  versions, audit reports, iteration logs), so the same events delivered to this deployment
  later are duplicates, not second attempts.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

import orjson

from service.adapters.mongo_schema import (
    ARTIFACTS,
    AUDIT_REPORTS,
    CAMPAIGNS,
    ENTITY_COLLECTIONS,
    ITERATION_LOGS,
    RUNS,
    VERSIONS,
)
from service.app.export import dumps
from service.app.outbox import OutboxEntry, Publisher, snapshot_entry
from service.domain.events import CampaignStatus, RunStatus, event_key
from service.domain.state import (
    ActiveVersionState,
    ArtifactState,
    CampaignState,
    Counts,
    RunState,
    parse_iso,
)

Document = dict[str, Any]
T = TypeVar("T")

# The outbox writer name of an import (see BatchProcessor): entries still in a snapshot
# document under such a name were stored by an import that did not see them published.
IMPORT_WRITER = "import:"


# Fields artifact documents carried until 2026-12: what follows from the artifact's versions.
# The snapshot and the versions hold it; an artifact document is written when the artifact
# comes into being, not at each version. Dropped from older exports and stored documents.
DERIVED_ARTIFACT_FIELDS = ("version_count", "active_version_id", "updated_at")


class InvalidExport(Exception):  # not a ValueError: the store maps those to StoreRejected
    """The file is not an export document this version can restore."""


class RestoreConflict(Exception):
    """A document of the export is stored here already with other content."""

    def __init__(self, collection: str, doc_id: str, detail: str) -> None:
        super().__init__(f"{collection}/{doc_id}: {detail}")
        self.collection = collection
        self.doc_id = doc_id
        self.detail = detail


@dataclass(frozen=True)
class Export:
    """A parsed export document: the campaign id and its documents by collection (as JSON)."""

    campaign_id: str
    documents: dict[str, list[Document]]

    @property
    def revision(self) -> int:
        revision: int = self.documents[CAMPAIGNS][0]["revision"]
        return revision

    def count(self) -> int:
        return sum(len(docs) for docs in self.documents.values())

    def event_keys(self) -> list[str]:
        """The `(source, id)` keys of the events that made the versions, audits and logs."""
        keys = []
        for collection in (VERSIONS, AUDIT_REPORTS, ITERATION_LOGS):
            for doc in self.documents[collection]:
                origin = doc.get("source_event")
                if isinstance(origin, dict) and {"source", "id"} <= origin.keys():
                    keys.append(event_key(str(origin["source"]), str(origin["id"])))
        return keys


def load_export(raw: bytes) -> Export:
    """Parse and check an export document (the output of `campaign-ledger export`)."""
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise InvalidExport(f"not JSON: {error}") from error
    if not isinstance(document, dict) or not isinstance(document.get("campaign_id"), str):
        raise InvalidExport("not an export document: no campaign_id")
    campaign_id: str = document["campaign_id"]
    documents: dict[str, list[Document]] = {}
    for collection in ENTITY_COLLECTIONS:
        docs = document.get(collection)
        if not isinstance(docs, list):
            raise InvalidExport(f"not an export document: {collection} is not a list")
        for doc in docs:
            if not isinstance(doc, dict) or not isinstance(doc.get("_id"), str):
                raise InvalidExport(f"a document of {collection} has no string _id")
            owner = doc["_id"] if collection == CAMPAIGNS else doc.get("campaign_id")
            if owner != campaign_id:
                raise InvalidExport(
                    f"{collection}/{doc['_id']} belongs to campaign {owner!r}, not {campaign_id!r}"
                )
        documents[collection] = docs
    for doc in documents[ARTIFACTS]:  # as an export made before they were dropped
        for name in DERIVED_ARTIFACT_FIELDS:
            doc.pop(name, None)
    if len(documents[CAMPAIGNS]) != 1:
        raise InvalidExport(f"expected one campaigns document, found {len(documents[CAMPAIGNS])}")
    export = Export(campaign_id, documents)
    campaign_state(export, revision=export.revision)  # every field the snapshot needs is there
    return export


def campaign_state(export: Export, revision: int) -> CampaignState:
    """The campaign's state, rebuilt from its documents as the rules left them."""
    try:
        return _state(export, revision)
    except (KeyError, TypeError, ValueError) as error:
        raise InvalidExport(f"incomplete export ({type(error).__name__}: {error})") from error


def _time(value: Any) -> datetime:
    parsed = parse_iso(value)
    if parsed is None:
        raise ValueError("a required time is missing")
    return parsed


def _state(export: Export, revision: int) -> CampaignState:
    docs = export.documents
    campaign = docs[CAMPAIGNS][0]
    versions = {doc["_id"]: doc for doc in docs[VERSIONS]}
    numbered: dict[str, list[Document]] = {}
    for version in sorted(versions.values(), key=lambda v: int(v["version_number"])):
        numbered.setdefault(version["artifact_id"], []).append(version)
    artifacts = {}
    for doc in docs[ARTIFACTS]:
        # What follows from the versions is read from them (see DERIVED_ARTIFACT_FIELDS).
        mine = numbered.get(doc["_id"], [])
        if [v["version_number"] for v in mine] != list(range(1, len(mine) + 1)) or not mine:
            raise ValueError(f"artifact {doc['_id']} lacks some of its versions")
        active = next((v for v in reversed(mine) if not v["archived"]), None)
        artifacts[doc["_id"]] = ArtifactState(
            artifact_id=doc["_id"],
            artifact_type=doc["artifact_type"],
            created_at=_time(doc["created_at"]),
            updated_at=max(_time(v["created_at"]) for v in mine),
            version_count=len(mine),
            active=ActiveVersionState(
                version_id=active["_id"],
                version_number=active["version_number"],
                created_at=_time(active["created_at"]),
                audit_state=active["audit_state"],
                approved=active["approved"],
            )
            if active
            else None,
        )
    runs = {
        doc["_id"]: RunState(
            run_id=doc["_id"],
            status=RunStatus(doc["status"]),
            execution_mode=doc.get("execution_mode"),
            started_at=parse_iso(doc.get("started_at")),
            completed_at=parse_iso(doc.get("completed_at")),
            error=doc.get("error"),
            version_count=doc.get("version_count", 0),
        )
        for doc in docs[RUNS]
    }
    return CampaignState(
        campaign_id=export.campaign_id,
        created_at=_time(campaign["created_at"]),
        updated_at=_time(campaign["updated_at"]),
        revision=revision,
        name=campaign.get("name"),
        brief=campaign.get("brief"),
        status=CampaignStatus(campaign["status"]),
        deleted=campaign["deleted"],
        deleted_at=parse_iso(campaign.get("deleted_at")),
        artifacts=artifacts,
        runs=runs,
        counts=Counts(
            versions=len(versions),
            audit_reports=len(docs[AUDIT_REPORTS]),
            iteration_logs=len(docs[ITERATION_LOGS]),
            archived_versions=sum(1 for v in versions.values() if v["archived"]),
            approved_versions=sum(1 for v in versions.values() if v["approved"]),
        ),
        audit_outcomes=dict(Counter(doc["outcome"] for doc in docs[AUDIT_REPORTS])),
    )


# ---- what is stored already, and what to write ------------------------------------------


@dataclass(frozen=True)
class Stored:
    """What this database holds of the export's documents, read in the import transaction."""

    documents: dict[str, dict[str, Document]]  # collection -> _id -> stored document
    marked: frozenset[str]  # event keys already marked processed
    snapshot_revision: int | None  # None: no campaign document (or tombstone) for the campaign
    tombstone: bool  # the campaign was purged here; its last revision is kept
    purge_pending: bool
    imported_from_revision: int | None  # set by an import that had to renumber (see above)
    held_for_versions: int  # events held here, waiting for one of the export's versions
    # (writer, entries) an earlier import stored in the campaign document and did not
    # confirm as published (Kafka was away): published again by this import.
    unconfirmed: tuple[str, list[OutboxEntry]] | None = None


@dataclass
class Plan:
    """The documents to insert and the snapshot to store; empty when all is there already."""

    inserts: dict[str, list[Document]] = field(default_factory=dict)
    event_keys: list[str] = field(default_factory=list)
    state: CampaignState | None = None  # set when the snapshot is to be stored
    unchanged: int = 0

    @property
    def is_empty(self) -> bool:
        return not self.inserts and not self.event_keys and self.state is None


class RestoreTransaction(Protocol):
    async def read(self, export: Export) -> Stored: ...

    async def write(
        self,
        export: Export,
        plan: Plan,
        outbox: list[OutboxEntry],
        now: datetime,
        *,
        renumbered_from: int | None,
        writer: str,
    ) -> None: ...


class RestoreStore(Protocol):
    async def in_transaction(self, work: Callable[[RestoreTransaction], Awaitable[T]]) -> T: ...

    async def pending_outbox(self, campaign_ids: Iterable[str]) -> list[OutboxEntry]: ...

    async def delete_outbox(self, entries: Iterable[OutboxEntry]) -> None: ...

    async def confirm_published(self, campaign_id: str, writer: str) -> None:
        """Forget the campaign document's outbox entries if `writer` still holds them."""


def _as_exported(doc: Document) -> Any:
    """A stored document as the export writes it, to compare with the file's copy."""
    return orjson.loads(dumps(doc))


def plan_restore(export: Export, stored: Stored) -> tuple[Plan, int | None]:
    """What to write; raises RestoreConflict. Also the revision renumbered from, if any."""
    if stored.purge_pending:
        raise RestoreConflict(
            CAMPAIGNS, export.campaign_id, "the campaign is being purged here; try again later"
        )
    plan = Plan()
    revision = export.revision
    renumbered_from = None
    purged_at = stored.snapshot_revision if stored.tombstone else None
    if purged_at is not None and purged_at >= revision:
        renumbered_from, revision = revision, purged_at + 1
    for collection in ENTITY_COLLECTIONS:
        for doc in export.documents[collection]:
            current = stored.documents[collection].get(doc["_id"])
            if current is not None and collection == ARTIFACTS:
                current = _without_derived(current)
            if current is None:
                if collection == CAMPAIGNS:
                    doc = {**doc, "revision": revision}  # noqa: PLW2901
                plan.inserts.setdefault(collection, []).append(doc)
            elif _same(collection, _as_exported(current), doc, stored):
                plan.unchanged += 1
            else:
                raise RestoreConflict(collection, doc["_id"], _difference(current, doc))
    plan.event_keys = [k for k in dict.fromkeys(export.event_keys()) if k not in stored.marked]
    if CAMPAIGNS in plan.inserts:  # not stored here, or purged (its tombstone read above)
        plan.state = campaign_state(export, revision)
    elif plan.inserts:
        # The campaign document is here and identical, but some of its documents are not:
        # this database's copy is not the exported campaign.
        collection, docs = next(iter(plan.inserts.items()))
        raise RestoreConflict(
            collection,
            docs[0]["_id"],
            "missing here although the campaign is stored with the same state",
        )
    return plan, renumbered_from


def _without_derived(artifact: Document) -> Document:
    return {k: v for k, v in artifact.items() if k not in DERIVED_ARTIFACT_FIELDS}


def _same(collection: str, current: Document, doc: Document, stored: Stored) -> bool:
    if current == doc:
        return True
    # A campaign an earlier import had to renumber (see the module's docstring).
    return (
        collection == CAMPAIGNS
        and stored.imported_from_revision == doc.get("revision")
        and current.get("revision") == stored.snapshot_revision
        and {**current, "revision": None} == {**doc, "revision": None}
    )


def _difference(current: Document, doc: Document) -> str:
    stored = _as_exported(current)
    fields = sorted(k for k in stored.keys() | doc.keys() if stored.get(k) != doc.get(k))
    return "stored with other content (fields differing: " + ", ".join(fields) + ")"


@dataclass(frozen=True, slots=True)
class RestoreResult:
    campaign_id: str
    inserted: dict[str, int]
    unchanged: int
    marks: int
    revision: int | None  # the snapshot revision stored by this import, if any
    published: int  # snapshot entries published (this import's or a previous one's)
    held_for_versions: int


async def restore(
    store: RestoreStore,
    publisher: Publisher,
    export: Export,
    *,
    now: datetime | None = None,
) -> RestoreResult:
    """Load the export in one transaction, then publish the campaign's pending snapshots.

    Raises RestoreConflict (nothing written), and the store's or publisher's errors. When the
    publication fails after the commit, the snapshot stays in the outbox under this import's
    writer name: the next import of the same file, or the campaign's next batch in the
    service (another writer's entries are published again), publishes it.
    """
    at = now or datetime.now(UTC)
    writer = f"{IMPORT_WRITER}{uuid.uuid4().hex}"

    async def work(tx: RestoreTransaction) -> tuple[Plan, Stored, list[OutboxEntry]]:
        stored = await tx.read(export)
        plan, renumbered_from = plan_restore(export, stored)
        outbox = [snapshot_entry(plan.state.snapshot(), at)] if plan.state else []
        if not plan.is_empty:
            await tx.write(export, plan, outbox, at, renumbered_from=renumbered_from, writer=writer)
        return plan, stored, outbox

    plan, stored, written = await store.in_transaction(work)
    carried = (writer, written) if written else stored.unconfirmed
    published = await publish(store, publisher, export.campaign_id, carried)
    return RestoreResult(
        campaign_id=export.campaign_id,
        inserted={name: len(docs) for name, docs in plan.inserts.items()},
        unchanged=plan.unchanged,
        marks=len(plan.event_keys),
        revision=plan.state.revision if plan.state else None,
        published=published,
        held_for_versions=stored.held_for_versions,
    )


async def publish(
    store: RestoreStore,
    publisher: Publisher,
    campaign_id: str,
    carried: tuple[str, list[OutboxEntry]] | None,
) -> int:
    """Publish the campaign's leftovers in the outbox collection (older), then the snapshot
    entries an import stored in its document; then forget what was published."""
    pending = await store.pending_outbox([campaign_id])
    entries = carried[1] if carried else []
    await publisher.publish(pending + entries)
    await store.delete_outbox(pending)
    if carried:
        await store.confirm_published(campaign_id, carried[0])
    return len(pending) + len(entries)
