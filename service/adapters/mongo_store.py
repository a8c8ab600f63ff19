"""The MongoDB side of the ledger: loading what a batch touches and writing what it changed.

Each batch runs in one multi-document transaction (snapshot reads, majority writes): the
entity documents, the processed-event marks, the held events, the campaign snapshots and the
snapshot outbox commit together or not at all. That single fact gives the guarantees their
footing: a mark exists exactly when its effects do, an audit report exists only beside its
version, and a revision is stored exactly when its outbox entry is.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, TypeVar

from pymongo import AsyncMongoClient
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError
from pymongo.read_concern import ReadConcern
from pymongo.read_preferences import ReadPreference
from pymongo.write_concern import WriteConcern

from service.adapters import mongo_outbox
from service.adapters import mongo_schema as cols
from service.adapters.mongo_documents import (
    COLLECTION_OF,
    VERSION_STATE_FIELDS,
    held_document,
    held_event,
    mark_document,
    mark_id,
    version_state,
)
from service.adapters.mongo_errors import classify
from service.adapters.mongo_outbox import (
    MongoOutbox,
    StoredOutbox,
    outbox_chunks,
    split_outbox,
    stored_entries,
)
from service.adapters.mongo_writes import (
    CLIENT_BULK_WRITE_MAX_WRITES,
    CLIENT_BULK_WRITE_WIRE_VERSION,
    DuplicateWrite,
    Write,
    Writes,
)
from service.app.outbox import UNKNOWN, OutboxEntry, Stamp
from service.app.restore import DERIVED_ARTIFACT_FIELDS
from service.app.store import ConcurrentUpdate, StoreRejected, StoreUnavailable
from service.domain.ledger import Changes, Entity, Missing, View
from service.domain.state import CampaignState

Document = dict[str, Any]
T = TypeVar("T")


class Transaction:
    """Reads and writes of one batch, all inside one MongoDB transaction."""

    def __init__(
        self,
        db: AsyncDatabase[Document],
        session: AsyncClientSession,
        *,
        client_bulk_write: bool = False,
        one_command_max_writes: int = CLIENT_BULK_WRITE_MAX_WRITES,
        read_concern: bool = True,
    ) -> None:
        self.db = db
        self.session = session
        self.client_bulk_write = client_bulk_write
        self.one_command_max_writes = one_command_max_writes
        # Whether the transaction carries a read concern, and whether a command has gone out
        # yet: the first command carries it, and SecantusDB refuses one on `bulkWrite`.
        self.read_concern = read_concern
        self.began = False
        self.writes = Writes(db, session)
        # Of each loaded campaign document: the outbox entries it holds (see `StoredOutbox`)
        # and when its delete was noted (kept or written by this batch); which campaigns
        # have one (a purged campaign's state comes from its tombstone).
        self.stored_outbox: dict[str, StoredOutbox] = {}
        self.noted: dict[str, datetime | None] = {}
        self.stored_docs: set[str] = set()
        # The probe for held events found none anywhere (see `_held_for`).
        self.none_held = False
        # Some campaign state came from memory, not from this transaction's reads: a
        # duplicate key then means it was stale (see `write`).
        self.lent = False

    def _col(self, name: str) -> AsyncCollection[Document]:
        return self.db[name]

    async def _find(
        self, name: str, query: Document, projection: Document | None = None, **kw: Any
    ) -> list[Document]:
        self.began = True
        cursor = self._col(name).find(query, projection, session=self.session, **kw)
        return await cursor.to_list()

    # ---- reads ---------------------------------------------------------------------------

    async def load(self, view: View, keys: Mapping[str, set[str]]) -> None:
        """Fill `view` with the given keys, one query per kind."""
        if ids := keys.get("processed"):
            by_mark = {mark_id(k): k for k in ids}
            found = await self._find(cols.PROCESSED_EVENTS, {"_id": {"$in": list(by_mark)}}, {})
            view.checked_events.update(ids)
            view.processed.update(by_mark[d["_id"]] for d in found)
        if ids := keys.get("campaign"):
            await self._load_campaigns(view, ids)
        if ids := view.owners_in_states(keys.get("artifact", set())):
            found = await self._find(
                cols.ARTIFACTS, {"_id": {"$in": list(ids)}}, {"campaign_id": 1, "artifact_type": 1}
            )
            view.artifact_owners.update(dict.fromkeys(ids))
            for doc in found:
                view.artifact_owners[doc["_id"]] = (doc["campaign_id"], doc["artifact_type"])
        if ids := keys.get("run"):
            found = await self._find(cols.RUNS, {"_id": {"$in": list(ids)}}, {"campaign_id": 1})
            view.run_owners.update(dict.fromkeys(ids))
            for doc in found:
                view.run_owners[doc["_id"]] = doc["campaign_id"]
        if ids := keys.get("version"):
            found = await self._find(
                cols.VERSIONS, {"_id": {"$in": list(ids)}}, VERSION_STATE_FIELDS
            )
            view.versions.update(dict.fromkeys(ids))
            for doc in found:
                view.versions[doc["_id"]] = version_state(doc)
        if ids := keys.get("held"):
            found = await self._held_for(ids)
            for version_id in ids:
                view.held[version_id] = []
            for doc in found:
                view.held[doc["version_id"]].append(held_event(doc))

    async def _load_campaigns(self, view: View, ids: set[str]) -> None:
        """Each campaign's state from its document; a purged one's from its tombstone (a
        campaign never stored is None)."""
        # `campaign_id` equals `_id` here; it is the shard key (see mongo_schema).
        query = {"_id": {"$in": list(ids)}, "campaign_id": {"$in": list(ids)}}
        found = await self._find(cols.CAMPAIGNS, query)
        view.campaigns.update(dict.fromkeys(ids))
        for doc in found:
            cid = doc["_id"]
            self.stored_docs.add(cid)
            self.noted[cid] = doc.get("deletion_noted_at")
            if packed := doc.get("outbox"):
                self.stored_outbox[cid] = StoredOutbox(
                    cid, doc.get("outbox_writer", ""), doc.get("outbox_batch", UNKNOWN), packed
                )
            view.campaigns[cid] = (
                # Claimed by a purge that is deleting its documents: as good as gone.
                CampaignState.new(cid, doc["purged_at"], after_revision=doc["revision"])
                if doc.get("purge_pending")
                # The brief is stored once, as the entity's field.
                else CampaignState.restore(
                    doc["snapshot"], {**doc["private"], "brief": doc.get("brief")}
                )
            )
        if gone := list(ids - self.stored_docs):
            query = {"_id": {"$in": gone}, "campaign_id": {"$in": gone}}
            for doc in await self._find(cols.TOMBSTONES, query):
                view.campaigns[doc["_id"]] = CampaignState.new(
                    doc["_id"], doc["purged_at"], after_revision=doc["revision"]
                )

    async def _held_for(self, version_ids: set[str]) -> list[Document]:
        """The events waiting for these versions, in arrival order.

        Almost always none wait anywhere, and the lookup costs the database a seek per id
        (tens of ms for the thousands of new versions of a drain's batch, against a
        millisecond or two for the probe): one probe for any waiting event goes first and usually
        ends it.
        """
        waiting = {"expired": {"$ne": True}}
        if not await self._find(cols.HELD_EVENTS, waiting, {"_id": 1}, limit=1):
            self.none_held = True
            return []
        return await self._find(
            cols.HELD_EVENTS,
            {"version_id": {"$in": list(version_ids)}, **waiting},
            sort=[("seq", 1)],
        )

    async def load_missing(self, view: View, missing: Missing) -> None:
        if missing.kind == "unarchived":
            found = await self._find(
                cols.VERSIONS,
                {"campaign_id": missing.campaign_id, "artifact_id": missing.key, "archived": False},
                VERSION_STATE_FIELDS,
                sort=[("version_number", -1)],
                limit=missing.limit,
            )
            view.unarchived[missing.key] = ([version_state(d) for d in found], missing.limit)
        else:
            await self.load(view, {missing.kind: {missing.key}})

    async def published_marks(self, writers: Iterable[str]) -> dict[str, int]:
        self.began = True
        return await mongo_outbox.published_marks(self.db, self.session, writers)

    def restamp(self, campaigns: Mapping[str, int], stamp: Stamp) -> None:
        """Entries of other writers that this batch publishes again, without rewriting their
        documents: stamped as this batch's, so they are known published after it. Queued:
        `write` sends it with the rest."""
        for cid, revision in campaigns.items():
            self.writes.add(
                Write(
                    cols.CAMPAIGNS,
                    "update",
                    {"_id": cid, "campaign_id": cid, "revision": revision},
                    {"$set": {"outbox_writer": stamp.writer, "outbox_batch": stamp.batch}},
                    must_match=True,
                )
            )

    # ---- writes --------------------------------------------------------------------------

    async def write(
        self,
        view: View,
        changes: Changes,
        outbox: list[OutboxEntry],
        now: datetime,
        *,
        writer: str = "",
        stamp: Stamp | None = None,
    ) -> list[OutboxEntry]:
        """Everything the batch decided, sent as one command where the server allows it (see
        `mongo_writes`), with whatever was queued before. Returns the entries that went to
        the outbox collection, as stored.

        Snapshot entries of the outbox ride in their campaign's document, which the
        batch rewrites anyway: no outbox insert, read back or delete per batch. `stamp`
        says who stores them in which batch (see `published_marks`); a bare `writer` has
        no batch, so its entries are never known published (an import clears them itself).
        Entries of a campaign whose document is not rewritten (dead letters) or too large
        for it go to the outbox collection.
        """
        stamp = stamp or Stamp(writer, UNKNOWN)
        writes = self.writes
        # An imported campaign document goes into the campaign document written below, with
        # the campaign's state.
        imported: dict[str, Document] = {}
        for kind, records in changes.inserts.items():
            if kind == "campaign":
                imported = {r["_id"]: r for r in records if r["_id"] in changes.campaigns}
                records = [r for r in records if r["_id"] not in imported]  # noqa: PLW2901
            if records:
                writes.insert(COLLECTION_OF[kind], records)
        for (entity, entity_id), fields in changes.patches.items():
            writes.add(_patch(view, entity, entity_id, fields))
        if changes.processed:
            writes.insert(
                cols.PROCESSED_EVENTS,
                [mark_document(key, cid) for key, cid in changes.processed],
            )
        if changes.held:
            writes.insert(cols.HELD_EVENTS, [held_document(h) for h in changes.held])
        if changes.released:
            writes.add(
                Write(
                    cols.HELD_EVENTS,
                    "delete_many",
                    {"_id": {"$in": [mark_id(k) for k in changes.released]}},
                )
            )
        in_documents, rest = split_outbox(outbox, changes.campaigns)
        self._write_campaigns(view, changes, imported, in_documents, stamp=stamp, now=now)
        stored: list[OutboxEntry] = []
        if rest:
            chunks = outbox_chunks(rest, now)
            writes.insert(cols.OUTBOX, chunks)
            stored = stored_entries(chunks)
        try:
            await writes.send(
                client_level=self.client_bulk_write and (self.began or not self.read_concern),
                max_writes=self.one_command_max_writes,
            )
        except DuplicateWrite as error:
            if self.lent:  # another writer got there first: read again and rerun
                raise ConcurrentUpdate(str(error)) from error
            raise
        return stored

    def _write_campaigns(
        self,
        view: View,
        changes: Changes,
        imported: Mapping[str, Document],
        outbox: Mapping[str, bytes],
        *,
        stamp: Stamp,
        now: datetime,
    ) -> None:
        """Each changed campaign's document, whole: the entity, its snapshot and state."""
        # Each campaign's newest snapshot was rendered by the rules already: reuse it.
        rendered = {snapshot["campaign_id"]: snapshot for snapshot in changes.snapshots}
        for campaign in changes.campaigns.values():
            cid = campaign.campaign_id
            snapshot = rendered.get(cid)
            if snapshot is None or snapshot["revision"] != campaign.revision:
                snapshot = campaign.snapshot()
            stored = view.campaigns.get(cid)
            # Retention counts from when the delete was applied here (see purge_campaign).
            if not campaign.deleted:
                noted = None
            elif stored is None or not stored.deleted:
                noted = now
            else:
                noted = self.noted.get(cid)
            self.noted[cid] = noted
            private = campaign.private()
            del private["brief"]  # stored once, as the entity's field
            doc = {
                **imported.get(cid, {}),
                "_id": cid,
                "campaign_id": cid,
                **campaign.entity(),
                "snapshot": snapshot,
                "private": private,
                "purge_pending": False,
                "deletion_noted_at": noted,
                "written_at": now,
                "outbox": outbox.get(cid, []),
                "outbox_writer": stamp.writer,
                "outbox_batch": stamp.batch,
            }
            if stored is not None and (stored.exists or cid in self.stored_docs):
                # Compare-and-set on the revision read: a concurrent writer makes this miss.
                target = {"_id": cid, "campaign_id": cid, "revision": stored.revision}
                self.writes.add(Write(cols.CAMPAIGNS, "replace", target, doc, must_match=True))
            else:
                self.writes.insert(cols.CAMPAIGNS, [doc])


def _patch(view: View, entity: Entity, entity_id: str, fields: Document) -> Write:
    # The shard key in every filter: the write goes to one shard, and an upsert on a sharded
    # collection requires it.
    target = {"_id": entity_id, "campaign_id": fields.get("campaign_id")}
    if entity == "version":
        stored = view.versions.get(entity_id)
        target["campaign_id"] = stored.campaign_id if stored else None
    if target["campaign_id"] is None:
        del target["campaign_id"]
    collection = COLLECTION_OF[entity]
    if entity == "version":
        # $literal keeps user data with '$' or '.' in its keys from being read as operators
        # or paths.
        update = [{"$set": {k: {"$literal": v} for k, v in fields.items()}}]
        return Write(collection, "update", target, update)
    # The rules always give an artifact or run whole: a replacement is cheaper than
    # an update and stores nested '$' and '.' keys as they are.
    return Write(collection, "replace", target, fields, upsert=True)


class MongoStore:
    """The MongoDB adapter: transactions for the consumer (the API reads via mongo_reads)."""

    def __init__(
        self,
        client: AsyncMongoClient[Document],
        database: str,
        *,
        one_command_max_writes: int = CLIENT_BULK_WRITE_MAX_WRITES,
    ) -> None:
        self.client = client
        self.one_command_max_writes = one_command_max_writes
        self.db: AsyncDatabase[Document] = client[database]
        self.outbox = MongoOutbox(self.db)
        # A batch's writes in one command from MongoDB 8.0 on (see mongo_writes); read from
        # the server's wire version at the first transaction.
        self.client_bulk_write: bool | None = None

    @classmethod
    def connect(
        cls,
        uri: str,
        database: str,
        *,
        one_command_max_writes: int = CLIENT_BULK_WRITE_MAX_WRITES,
        **options: Any,
    ) -> MongoStore:
        # tz_aware: the rules compare times, and MongoDB's are UTC.
        client: AsyncMongoClient[Document] = AsyncMongoClient(
            uri, tz_aware=True, serverSelectionTimeoutMS=5000, **options
        )
        return cls(client, database, one_command_max_writes=one_command_max_writes)

    async def ensure_schema(self) -> None:
        await cols.ensure_schema(self.db)
        await self._move_legacy_snapshots()
        # Artifact documents written when they still followed their versions: no stale copy.
        await self.db[cols.ARTIFACTS].update_many(
            {"version_count": {"$exists": True}},
            {"$unset": dict.fromkeys(DERIVED_ARTIFACT_FIELDS, "")},
        )

    async def _move_legacy_snapshots(self) -> None:
        """Snapshot documents of an earlier version, kept apart from their campaign documents:
        each goes into its campaign document, or becomes a tombstone if it was one, and then
        is deleted. Repeatable: a start cut short moves the rest at the next one. Stop the
        instances of the earlier version first (they would still write the old documents).
        """
        legacy = self.db[cols.LEGACY_SNAPSHOTS]
        async for doc in legacy.find():
            cid = doc["_id"]
            if doc.get("tombstone"):
                tombstone = {
                    "campaign_id": cid,
                    "revision": doc["revision"],
                    "purged_at": doc["purged_at"],
                    "purge_pending": bool(doc.get("purge_pending")),
                }
                await self.db[cols.TOMBSTONES].replace_one({"_id": cid}, tombstone, upsert=True)
                if tombstone["purge_pending"]:  # its campaign document may not be deleted yet
                    await self.db[cols.CAMPAIGNS].update_one(
                        {"_id": cid},
                        {"$set": {"purge_pending": True, "purged_at": doc["purged_at"]}},
                    )
            else:
                state = {k: doc[k] for k in cols.CAMPAIGN_STATE_FIELDS if k in doc}
                state["private"] = {k: v for k, v in doc["private"].items() if k != "brief"}
                moved = await self.db[cols.CAMPAIGNS].update_one(
                    {"_id": cid, "revision": doc["revision"]}, {"$set": state}
                )
                if not moved.matched_count:
                    raise StoreRejected(
                        f"the stored snapshot of campaign {cid} (revision {doc['revision']}) "
                        "has no campaign document of the same revision: not moved"
                    )
            await legacy.delete_one({"_id": cid})

    async def ping(self) -> bool:
        try:
            await self.client.admin.command("ping")
        except PyMongoError:
            return False
        return True

    async def close(self) -> None:
        await self.client.close()

    async def in_transaction(
        self, work: Callable[[Transaction], Awaitable[T]], *, write_first: bool = False
    ) -> T:
        """Run `work` in a transaction; transient failures rerun it (pymongo's retry loop).

        Its reads see one snapshot (read concern "snapshot"). A transaction whose first
        command is its write (`write_first`: the batch reads nothing up front) carries no
        read concern: the first command carries the transaction's, and SecantusDB refuses
        one on `bulkWrite`. What such a batch reads later (what the rules find missing) is
        then read at the server's default level; its compare-and-set on each campaign's
        revision and the unique keys of what it writes guard it as they guard every batch.
        """
        try:
            if self.client_bulk_write is None:
                hello = await self.client.admin.command("hello")
                wire = hello.get("maxWireVersion", 0)
                self.client_bulk_write = wire >= CLIENT_BULK_WRITE_WIRE_VERSION
            client_level = self.client_bulk_write
            async with self.client.start_session() as session:

                async def callback(s: AsyncClientSession) -> T:
                    return await work(
                        Transaction(
                            self.db,
                            s,
                            client_bulk_write=client_level,
                            one_command_max_writes=self.one_command_max_writes,
                            read_concern=not write_first,
                        )
                    )

                return await session.with_transaction(
                    callback,
                    read_concern=ReadConcern() if write_first else ReadConcern("snapshot"),
                    write_concern=WriteConcern("majority"),
                    read_preference=ReadPreference.PRIMARY,
                    max_commit_time_ms=30_000,
                )
        except (ConcurrentUpdate, StoreUnavailable, StoreRejected):
            raise
        except PyMongoError as error:
            raise classify(error) from error
        except (TypeError, ValueError, OverflowError) as error:  # BSON could not encode it
            raise StoreRejected(f"{type(error).__name__}: {error}") from error
