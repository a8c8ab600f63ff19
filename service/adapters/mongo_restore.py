"""MongoDB for `campaign-ledger import`: read what is stored, write the restored campaign.

Writes go through the batch's own `Transaction.write` (entity inserts, processed-event marks,
the snapshot's compare-and-set, the outbox), so an import stores a campaign exactly the way
the consumer does, in one transaction.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from typing import Any, TypeVar

from service.adapters import mongo_schema as cols
from service.adapters.mongo_documents import KIND_OF
from service.adapters.mongo_store import MongoStore, Transaction
from service.app.outbox import OutboxEntry
from service.app.restore import IMPORT_WRITER, Export, Plan, RestoreTransaction, Stored
from service.domain.ledger import Changes, View

Document = dict[str, Any]
T = TypeVar("T")
_ID_CHUNK = 1000

# The stored times of each entity collection, which the export writes as RFC 3339 text.
DATE_FIELDS: dict[str, tuple[str, ...]] = {
    cols.CAMPAIGNS: ("created_at", "updated_at", "deleted_at"),
    cols.ARTIFACTS: ("created_at", "updated_at"),
    cols.VERSIONS: ("created_at", "approved_at", "archived_at", "source_event.time"),
    cols.AUDIT_REPORTS: ("completed_at", "source_event.time"),
    cols.ITERATION_LOGS: ("submitted_at", "source_event.time"),
    cols.RUNS: ("started_at", "completed_at"),
}


def stored_form(collection: str, doc: Document) -> Document:
    """An exported document as it is stored: its times as dates again (nothing else differs)."""
    stored = dict(doc)
    for path in DATE_FIELDS[collection]:
        head, _, leaf = path.partition(".")
        if leaf:
            if isinstance(inner := stored.get(head), dict):
                stored[head] = inner = dict(inner)
                _to_date(inner, leaf)
        else:
            _to_date(stored, head)
    return stored


def _to_date(doc: Document, name: str) -> None:
    if isinstance(value := doc.get(name), str):
        doc[name] = datetime.fromisoformat(value)


class MongoRestoreTransaction(RestoreTransaction):
    def __init__(self, tx: Transaction) -> None:
        self.tx = tx
        self.view = View()

    async def read(self, export: Export) -> Stored:
        tx, campaign_id = self.tx, export.campaign_id
        documents: dict[str, dict[str, Document]] = {}
        for collection in cols.ENTITY_COLLECTIONS:
            ids = [doc["_id"] for doc in export.documents[collection]]
            found: dict[str, Document] = {}
            # The campaign entity, not the service's state beside it.
            entity = cols.CAMPAIGN_ENTITY_ONLY if collection == cols.CAMPAIGNS else None
            for start in range(0, len(ids), _ID_CHUNK):
                cursor = tx.db[collection].find(
                    {"_id": {"$in": ids[start : start + _ID_CHUNK]}}, entity, session=tx.session
                )
                found.update((doc["_id"], doc) for doc in await cursor.to_list())
            documents[collection] = found
        # Marks and the stored campaign state as the consumer reads them.
        await tx.load(self.view, {"processed": set(export.event_keys()), "campaign": {campaign_id}})
        fields = {"revision": 1, "purge_pending": 1, "imported_from_revision": 1}
        state = await tx.db[cols.CAMPAIGNS].find_one(
            {"_id": campaign_id}, fields, session=tx.session
        )
        tombstone = await tx.db[cols.TOMBSTONES].find_one(
            {"_id": campaign_id}, fields, session=tx.session
        )
        # Being purged: the campaign document is marked first, the tombstone cleared last.
        purging = any(doc and doc.get("purge_pending") for doc in (state, tombstone))
        if purging or state is None:
            state = tombstone
        carried = tx.stored_outbox.get(campaign_id)
        versions = [doc["_id"] for doc in export.documents[cols.VERSIONS]]
        held = await tx.db[cols.HELD_EVENTS].count_documents(
            {"version_id": {"$in": versions}, "expired": {"$ne": True}}, session=tx.session
        )
        return Stored(
            documents=documents,
            marked=frozenset(self.view.processed),
            snapshot_revision=state["revision"] if state else None,
            tombstone=state is not None and state is tombstone,
            purge_pending=purging,
            imported_from_revision=state.get("imported_from_revision") if state else None,
            held_for_versions=held,
            unconfirmed=(carried.writer, carried.entries)
            if carried and carried.writer.startswith(IMPORT_WRITER)
            else None,
        )

    async def write(
        self,
        export: Export,
        plan: Plan,
        outbox: list[OutboxEntry],
        now: datetime,
        *,
        renumbered_from: int | None,
        writer: str,
    ) -> None:
        changes = Changes()
        for collection, docs in plan.inserts.items():
            changes.inserts[KIND_OF[collection]] = [stored_form(collection, doc) for doc in docs]
        changes.processed = [(key, export.campaign_id) for key in plan.event_keys]
        if plan.state is not None:
            changes.campaigns[export.campaign_id] = plan.state
        await self.tx.write(self.view, changes, outbox, now, writer=writer)
        if renumbered_from is not None:
            await self.tx.db[cols.CAMPAIGNS].update_one(
                {"_id": export.campaign_id},
                {"$set": {"imported_from_revision": renumbered_from}},
                session=self.tx.session,
            )


class MongoRestore:
    """The store side of the restore use case, on the service's MongoStore."""

    def __init__(self, store: MongoStore) -> None:
        self.store = store

    async def in_transaction(self, work: Callable[[RestoreTransaction], Awaitable[T]]) -> T:
        return await self.store.in_transaction(lambda tx: work(MongoRestoreTransaction(tx)))

    async def pending_outbox(self, campaign_ids: Iterable[str]) -> list[OutboxEntry]:
        return await self.store.outbox.pending(campaign_ids)

    async def delete_outbox(self, entries: Iterable[OutboxEntry]) -> None:
        await self.store.outbox.delete(entries)

    async def confirm_published(self, campaign_id: str, writer: str) -> None:
        """Published: the document's entries need not be sent again. Only while `writer` still
        holds them: a batch that rewrote the document since then owns what it holds."""
        await self.store.db[cols.CAMPAIGNS].update_one(
            {"_id": campaign_id, "campaign_id": campaign_id, "outbox_writer": writer},
            {"$set": {"outbox": []}},
        )
