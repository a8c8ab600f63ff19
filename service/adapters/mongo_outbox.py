"""How the outbox is stored in MongoDB (the rules are in `service.app.outbox`).

Snapshot entries ride in their campaign's document, which the batch rewrites
anyway, packed into one compressed value: no outbox insert, read back or delete per batch.
Entries of a campaign whose document is not rewritten (dead letters) or too large for it go
to the outbox collection, one document per campaign and batch.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import cramjam
import orjson
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from service.adapters import mongo_schema as cols
from service.app.outbox import OutboxEntry, Stamp

Document = dict[str, Any]
OUTBOX_CHUNK_BYTES = 4 * 1024 * 1024  # well under MongoDB's 16 MiB document limit
# The first byte of a packed value: the codec, so another one can be added later.
LZ4_PACKED = b"\x01"


def pack_outbox(entries: list[OutboxEntry]) -> bytes:
    """A campaign's entries as one compressed value for its campaign document.

    Consecutive revisions of one campaign differ in a few fields: compressed together they
    take a fraction of the bytes, which the database would otherwise write, journal and
    sync at every batch. Layout, before compression: one JSON line of
    `[id, kind, revision, key, length]`, then the values. LZ4 rather than zlib: several
    times faster for a similar size, and this runs once per event when every revision is
    published.
    """
    header = [[e.id, e.kind, e.revision, e.key, len(e.value)] for e in entries]
    data = b"\n".join([orjson.dumps(header), *(e.value for e in entries)])
    return LZ4_PACKED + bytes(cramjam.lz4.compress_block(data))


def unpack_outbox(campaign_id: str, stored: bytes) -> list[OutboxEntry]:
    """The inverse of `pack_outbox`."""
    stored = bytes(stored)
    if not stored.startswith(LZ4_PACKED):
        msg = f"outbox of campaign {campaign_id}: unknown packing {stored[:1]!r}"
        raise ValueError(msg)
    data = bytes(cramjam.lz4.decompress_block(stored[len(LZ4_PACKED) :]))
    line_end = data.index(b"\n")
    entries = []
    start = line_end + 1
    for id_, kind, revision, key, length in orjson.loads(data[:line_end]):
        entries.append(
            OutboxEntry(id_, campaign_id, kind, revision, key, data[start : start + length])
        )
        start += length + 1
    return entries


def split_outbox(
    entries: list[OutboxEntry], rewritten: Mapping[str, object]
) -> tuple[dict[str, bytes], list[OutboxEntry]]:
    """Snapshot entries of campaigns whose document the batch rewrites go into it, packed,
    unless too large for one document; everything else goes to the outbox collection."""
    by_campaign: dict[str, list[OutboxEntry]] = {}
    rest: list[OutboxEntry] = []
    for entry in entries:
        if entry.kind == "snapshot" and entry.campaign_id in rewritten:
            by_campaign.setdefault(entry.campaign_id, []).append(entry)
        else:
            rest.append(entry)
    in_documents: dict[str, bytes] = {}
    for campaign_id, items in by_campaign.items():
        if sum(len(e.value) for e in items) > OUTBOX_CHUNK_BYTES:
            rest.extend(items)
        else:
            in_documents[campaign_id] = pack_outbox(items)
    return in_documents, rest


def outbox_chunks(entries: list[OutboxEntry], now: datetime) -> list[Document]:
    """Entries for the outbox collection as few documents as possible: one per campaign and
    batch, split by size (a document per entry would cost one index update per revision)."""
    by_campaign: dict[str, list[OutboxEntry]] = {}
    for entry in entries:
        by_campaign.setdefault(entry.campaign_id, []).append(entry)
    chunks: list[Document] = []
    for campaign_id, items in by_campaign.items():
        current: list[Document] = []
        size = 0
        for entry in items:
            weight = len(entry.value)
            if current and size + weight > OUTBOX_CHUNK_BYTES:
                chunks.append(_chunk(campaign_id, current, now))
                current, size = [], 0
            current.append(_stored(entry))
            size += weight
        if current:
            chunks.append(_chunk(campaign_id, current, now))
    return chunks


def _stored(entry: OutboxEntry) -> Document:
    return {
        "id": entry.id,
        "kind": entry.kind,
        "revision": entry.revision,
        "key": entry.key,
        "value": entry.value,
    }


def _chunk(campaign_id: str, entries: list[Document], now: datetime) -> Document:
    first = min((e["revision"] for e in entries if e["kind"] == "snapshot"), default=0)
    return {
        "_id": f"{campaign_id}:{first:012d}:{uuid.uuid4().hex[:12]}",
        "campaign_id": campaign_id,
        "revision": first,
        "entries": entries,
        "created_at": now,
    }


def stored_entries(chunks: list[Document]) -> list[OutboxEntry]:
    """The entries of outbox documents, as `MongoOutbox.pending` reads them back."""
    return [
        _entry(doc["campaign_id"], e, chunk=doc["_id"]) for doc in chunks for e in doc["entries"]
    ]


def _entry(campaign_id: str, stored: Document, chunk: str) -> OutboxEntry:
    return OutboxEntry(
        stored["id"],
        campaign_id,
        stored["kind"],
        stored["revision"],
        stored["key"],
        stored["value"],
        chunk=chunk,
    )


class StoredOutbox:
    """The outbox entries a loaded campaign document holds: who stored them (`writer`) in
    which of its batches. Unpacked only when asked for: almost always they were published
    long ago."""

    def __init__(self, campaign_id: str, writer: str, batch: int, packed: bytes) -> None:
        self.campaign_id = campaign_id
        self.writer = writer
        self.batch = batch
        self._packed = packed

    @functools.cached_property
    def entries(self) -> list[OutboxEntry]:
        return unpack_outbox(self.campaign_id, self._packed)


class MongoOutbox:
    """The outbox collection and the published marks, outside any batch's transaction."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.db = db

    async def pending(self, campaign_ids: Iterable[str]) -> list[OutboxEntry]:
        """Unpublished messages of these campaigns, each campaign's revisions in order."""
        cursor = self.db[cols.OUTBOX].find(
            {"campaign_id": {"$in": list(campaign_ids)}},
            sort=[("campaign_id", 1), ("revision", 1), ("_id", 1)],
        )
        return stored_entries(await cursor.to_list())

    async def mark_published(self, stamp: Stamp, now: datetime) -> None:
        """Every entry `stamp.writer` stored up to batch `stamp.batch` is published: a later
        reader of those documents (this instance restarted, another one) need not send them
        again."""
        await self.db[cols.PUBLISHERS].update_one(
            {"_id": stamp.writer},
            {"$set": {"published_batch": stamp.batch, "at": now}},
            upsert=True,
        )

    async def delete(self, entries: Iterable[OutboxEntry]) -> None:
        """Forget published entries (all of each stored chunk is published together)."""
        stored = [entry for entry in entries if entry.chunk]
        chunks = sorted({entry.chunk for entry in stored})
        if chunks:
            campaigns = sorted({entry.campaign_id for entry in stored})
            await self.db[cols.OUTBOX].delete_many(
                {"_id": {"$in": chunks}, "campaign_id": {"$in": campaigns}}
            )


async def published_marks(
    db: AsyncDatabase[Document], session: AsyncClientSession, writers: Iterable[str]
) -> dict[str, int]:
    """The last batch each writer published in full (its stamped entries up to it)."""
    cursor = db[cols.PUBLISHERS].find({"_id": {"$in": sorted(set(writers))}}, session=session)
    return {doc["_id"]: doc["published_batch"] for doc in await cursor.to_list()}
