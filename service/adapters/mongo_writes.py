"""A batch's writes, sent to MongoDB in as few round trips as the server allows.

The writes of a transaction are queued in order and sent once, at its end:
- on MongoDB 8.0 and later (wire version 25+), as one client-level `bulkWrite` command over
  every collection (ordered, so the first failure stops it, and inside the transaction, so
  nothing of it is applied unless everything is), unless the batch is large (see
  CLIENT_BULK_WRITE_MAX_WRITES);
- otherwise as one ordered `bulk_write` per run of writes to the same collection.
Compare-and-set writes (`must_match`) are checked either way: one that matched nothing means
another writer changed the document since it was read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pymongo import DeleteMany, InsertOne, ReplaceOne, UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, ClientBulkWriteException

from service.adapters.mongo_errors import DUPLICATE_KEY
from service.app.store import ConcurrentUpdate, StoreRejected

Document = dict[str, Any]
# The first wire version of MongoDB 8.0, which has the client-level bulkWrite command.
CLIENT_BULK_WRITE_WIRE_VERSION = 25
# Up to this many writes go as one client-level command by default; more go per collection
# (setting MONGODB_ONE_COMMAND_MAX_WRITES). A live batch is a few dozen writes, where round
# trips are most of its time; a drain's batch is thousands, where the command's per-write
# cost is. Measured on SecantusDB in one transaction: 4 inserts 24 ms one command against
# 59 ms per collection, 40 about even, 400 817 against 261 ms, 2,000 3,221 against 834 ms.
CLIENT_BULK_WRITE_MAX_WRITES = 64
CHANGED_UNDER_BATCH = "a campaign changed while this batch was applied"


class DuplicateWrite(StoreRejected):
    """Every failed write was a duplicate key: refused for what the batch holds, unless the
    batch worked from state kept in memory that another writer made stale (the caller
    knows which)."""


@dataclass(slots=True)
class Write:
    collection: str
    op: Literal["insert", "replace", "update", "delete_many"]
    filter: Document = field(default_factory=dict)
    document: Any = None  # the document, the replacement or the update
    upsert: bool = False
    must_match: bool = False  # a compare-and-set: it must find its document


class Writes:
    """The queued writes of one transaction."""

    def __init__(self, db: AsyncDatabase[Document], session: AsyncClientSession) -> None:
        self.db = db
        self.session = session
        self.queued: list[Write] = []

    def insert(self, collection: str, documents: list[Document]) -> None:
        self.queued.extend(Write(collection, "insert", document=d) for d in documents)

    def add(self, write: Write) -> None:
        self.queued.append(write)

    async def send(
        self, *, client_level: bool, max_writes: int = CLIENT_BULK_WRITE_MAX_WRITES
    ) -> int:
        """Send every queued write; returns the number of commands it took. `client_level`:
        up to `max_writes` go as one client-level command."""
        queued, self.queued = self.queued, []
        if not queued:
            return 0
        if client_level and len(queued) <= max_writes:
            await self._send_client_level(queued)
            return 1
        return await self._send_per_collection(queued)

    async def _send_client_level(self, queued: list[Write]) -> None:
        prefix = f"{self.db.name}."
        models = [_client_model(prefix + w.collection, w) for w in queued]
        client = self.db.client
        try:
            result = await client.bulk_write(
                models,
                session=self.session,
                ordered=True,
                verbose_results=any(w.must_match for w in queued),
            )
        except ClientBulkWriteException as error:
            raise _refusal(error) from error
        if not any(w.must_match for w in queued):
            return
        updates = result.update_results
        for index, write in enumerate(queued):
            if write.must_match and (index not in updates or updates[index].matched_count != 1):
                raise ConcurrentUpdate(CHANGED_UNDER_BATCH)

    async def _send_per_collection(self, queued: list[Write]) -> int:
        runs: list[list[Write]] = []
        for write in queued:
            if runs and runs[-1][0].collection == write.collection:
                runs[-1].append(write)
            else:
                runs.append([write])
        for run in runs:
            try:
                result = await self.db[run[0].collection].bulk_write(
                    [_collection_model(w) for w in run],
                    ordered=True,
                    session=self.session,
                )
            except BulkWriteError as error:
                raise _refusal(error) from error
            expected = sum(w.must_match for w in run)
            # The runs that hold compare-and-set writes hold nothing else that may match.
            if expected and result.matched_count != expected:
                raise ConcurrentUpdate(CHANGED_UNDER_BATCH)
        return len(runs)


def _client_model(namespace: str, w: Write) -> Any:
    if w.op == "insert":
        return InsertOne(namespace=namespace, document=w.document)
    if w.op == "replace":
        return ReplaceOne(
            namespace=namespace, filter=w.filter, replacement=w.document, upsert=w.upsert
        )
    if w.op == "update":
        return UpdateOne(namespace=namespace, filter=w.filter, update=w.document, upsert=w.upsert)
    return DeleteMany(namespace=namespace, filter=w.filter)


def _collection_model(w: Write) -> Any:
    if w.op == "insert":
        return InsertOne(w.document)
    if w.op == "replace":
        return ReplaceOne(w.filter, w.document, upsert=w.upsert)
    if w.op == "update":
        return UpdateOne(w.filter, w.document, upsert=w.upsert)
    return DeleteMany(w.filter)


def _refusal(error: ClientBulkWriteException | BulkWriteError) -> Exception:
    """What a failed bulk write means: the command's own error (a transient error or a
    stepdown, which the transaction's retry and `classify` know), else a write the server
    refused for what it holds."""
    if isinstance(error, ClientBulkWriteException) and isinstance(error.error, Exception):
        return error.error
    codes = {e.get("code") for e in (error.details or {}).get("writeErrors", [])}
    refusal = DuplicateWrite if codes == {DUPLICATE_KEY} else StoreRejected
    return refusal(f"{type(error).__name__}: {error}")
