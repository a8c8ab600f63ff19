"""Collections, indexes and `$jsonSchema` validators, created idempotently at start.

Every read the HTTP API and the rules make is served by one of these indexes, so each is a
bounded, indexed query however long a campaign's history grows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import CollectionInvalid, OperationFailure

# The six entity collections of the contract, and ours.
CAMPAIGNS = "campaigns"
ARTIFACTS = "artifacts"
VERSIONS = "versions"
AUDIT_REPORTS = "audit_reports"
ITERATION_LOGS = "iteration_logs"
RUNS = "orchestration_runs"
# A purged campaign's last revision (its id used again goes on from it), and whether the purge
# is still deleting its documents.
TOMBSTONES = "campaign_tombstones"
# Where each campaign's snapshot lived before it moved into the campaign document: emptied
# into `campaigns` and `campaign_tombstones` at start (see MongoStore.ensure_schema).
LEGACY_SNAPSHOTS = "snapshots"
HELD_EVENTS = "held_events"
PROCESSED_EVENTS = "processed_events"
OUTBOX = "outbox"
# One small document per processor start: the last batch whose outbox it published.
PUBLISHERS = "outbox_publishers"

NAMESPACE_EXISTS = 48  # the server's code when a collection was created concurrently
INDEX_NOT_FOUND = 27

ENTITY_COLLECTIONS = (CAMPAIGNS, ARTIFACTS, VERSIONS, AUDIT_REPORTS, ITERATION_LOGS, RUNS)

# A campaign document holds the campaign entity of the contract and, beside it, what only the
# service reads: the snapshot and the rules' private state, the snapshot outbox, the retention
# marks. One document, so a change costs one write (they change together at every event).
# Exports, imports and every entity read leave these fields out.
CAMPAIGN_STATE_FIELDS = (
    "snapshot",
    "private",
    "outbox",
    "outbox_writer",
    "outbox_batch",
    "written_at",
    "deletion_noted_at",
    "purge_pending",
    "purged_at",
    "imported_from_revision",
)
CAMPAIGN_ENTITY_ONLY: dict[str, Any] = dict.fromkeys(CAMPAIGN_STATE_FIELDS, 0)

_STRING = {"bsonType": "string"}
_DATE = {"bsonType": "date"}
_INT = {"bsonType": ["int", "long"]}
_BOOL = {"bsonType": "bool"}
_OPTIONAL_STRING = {"bsonType": ["string", "null"]}
_OPTIONAL_DATE = {"bsonType": ["date", "null"]}


def _schema(required: dict[str, Any], optional: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "$jsonSchema": {
            "bsonType": "object",
            "required": ["_id", *required],
            "properties": {"_id": _STRING, **required, **(optional or {})},
        }
    }


VALIDATORS: dict[str, dict[str, Any]] = {
    CAMPAIGNS: _schema(
        {
            "campaign_id": _STRING,
            "status": {
                "enum": ["draft", "generating", "generated", "auditing", "completed", "cancelled"]
            },
            "deleted": _BOOL,
            "created_at": _DATE,
            "updated_at": _DATE,
            "revision": _INT,
        },
        {
            "name": _OPTIONAL_STRING,
            "deleted_at": _OPTIONAL_DATE,
            # The batch reads the state and compare-and-sets it by `_id` and `campaign_id`
            # (the shard key) and revision.
            "snapshot": {"bsonType": "object"},
            "private": {"bsonType": "object"},
        },
    ),
    ARTIFACTS: _schema(
        {
            "campaign_id": _STRING,
            "artifact_type": _STRING,
            "created_at": _DATE,
        },
    ),
    VERSIONS: _schema(
        {
            "campaign_id": _STRING,
            "artifact_id": _STRING,
            "version_id": _STRING,
            "version_number": {"bsonType": ["int", "long"], "minimum": 1},
            "content": {"bsonType": "object"},
            "created_at": _DATE,
            "audit_state": {"enum": ["pending", "passed", "conditional", "failed", "unaudited"]},
            "archived": _BOOL,
            "approved": _BOOL,
        }
    ),
    AUDIT_REPORTS: _schema(
        {
            "campaign_id": _STRING,
            "version_id": _STRING,
            "attempt": {"bsonType": ["int", "long"], "minimum": 1},
            "outcome": {"enum": ["pass", "conditional", "fail", "error"]},
            "completed_at": _DATE,
        }
    ),
    ITERATION_LOGS: _schema(
        {
            "campaign_id": _STRING,
            "version_id": _STRING,
            "artifact_id": _STRING,
            "feedback_number": {"bsonType": ["int", "long"], "minimum": 1},
            "submitted_at": _DATE,
            "feedback_text": _STRING,
        }
    ),
    RUNS: _schema(
        {
            "campaign_id": _STRING,
            "status": {"enum": ["running", "completed", "failed", "cancelled"]},
        }
    ),
    TOMBSTONES: _schema({"campaign_id": _STRING, "revision": _INT, "purge_pending": _BOOL}),
}

# Sharding: every collection can be sharded on `campaign_id`, so every unique
# index other than `_id` begins with it. Artifact, version, audit and iteration ids are global
# (one campaign owns each), so a unique index with `campaign_id` in front enforces the same
# uniqueness as the same index without it.
INDEXES: dict[str, list[IndexModel]] = {
    # the retention sweep: deleted campaigns by when the delete was applied
    CAMPAIGNS: [IndexModel([("deletion_noted_at", ASCENDING)])],
    ARTIFACTS: [IndexModel([("campaign_id", ASCENDING), ("_id", ASCENDING)])],
    VERSIONS: [
        # A number is never used twice; also the archive successor (read backwards), purge,
        # and the version history pages and export (they ask by campaign and artifact).
        IndexModel(
            [("campaign_id", ASCENDING), ("artifact_id", ASCENDING), ("version_number", ASCENDING)],
            unique=True,
        ),
        # The iteration lineage (versions following a feedback or a version). Sparse: only
        # versions that carry the link are indexed.
        IndexModel([("feedback_id", ASCENDING)], sparse=True),
        IndexModel([("parent_version_id", ASCENDING)], sparse=True),
    ],
    AUDIT_REPORTS: [
        IndexModel(
            [("campaign_id", ASCENDING), ("version_id", ASCENDING), ("attempt", ASCENDING)],
            unique=True,
        ),
        # GET /versions/{version_id}/audits, which names no campaign (scatter-gather).
        IndexModel([("version_id", ASCENDING), ("attempt", ASCENDING)]),
    ],
    ITERATION_LOGS: [
        IndexModel([("campaign_id", ASCENDING), ("submitted_at", ASCENDING), ("_id", ASCENDING)]),
        IndexModel(
            [("campaign_id", ASCENDING), ("version_id", ASCENDING), ("feedback_number", ASCENDING)],
            unique=True,
        ),
        IndexModel([("feedback_id", ASCENDING)]),
    ],
    RUNS: [IndexModel([("campaign_id", ASCENDING)])],
    TOMBSTONES: [],  # read by _id, and by `purge_pending` in the sweep (a few documents)
    HELD_EVENTS: [
        IndexModel([("version_id", ASCENDING), ("seq", ASCENDING)]),
        IndexModel([("held_at", ASCENDING)]),
        IndexModel([("campaign_id", ASCENDING)]),
    ],
    PROCESSED_EVENTS: [],  # read by _id only; kept through purges (see MongoStore.purge)
    OUTBOX: [IndexModel([("campaign_id", ASCENDING), ("revision", ASCENDING)])],
    # Read by _id only; not sharded (a few documents). A mark gone after a week only means
    # that writer's last entries, if still stored, are published once more.
    PUBLISHERS: [IndexModel([("at", ASCENDING)], expireAfterSeconds=7 * 86400)],
}


async def ensure_schema(db: AsyncDatabase[dict[str, Any]]) -> None:
    """Create or update every collection, validator and index; safe to run at every start."""
    existing = set(await db.list_collection_names())
    for name, indexes in INDEXES.items():
        validator = VALIDATORS.get(name)
        if name not in existing:
            try:
                await db.create_collection(name, validator=validator)
            except (CollectionInvalid, OperationFailure) as error:
                # Another instance starting at the same moment created it first.
                if isinstance(error, OperationFailure) and error.code != NAMESPACE_EXISTS:
                    raise
        if validator is not None:
            await db.command("collMod", name, validator=validator, validationLevel="strict")
        await _drop_retired_indexes(db, name)
        if indexes:
            await db[name].create_indexes(indexes)


def unshardable(index: Mapping[str, Any]) -> bool:
    """A unique index that a collection sharded on `campaign_id` could not keep."""
    if index.get("name") == "_id_" or not index.get("unique"):
        return False
    first: str = next(iter(index["key"]))
    return first != "campaign_id"


# Indexes earlier versions created that no query needs any more: each costs every insert.
RETIRED_INDEXES: dict[str, set[tuple[tuple[str, Any], ...]]] = {
    VERSIONS: {
        (("artifact_id", ASCENDING), ("version_number", ASCENDING)),
        (("run_id", ASCENDING),),  # no read asks for the versions of a run
    },
}


def retired(collection: str, index: Mapping[str, Any]) -> bool:
    """An index to drop: unique but not led by `campaign_id` (the new ones, created right
    after, enforce the same uniqueness), or one that no query uses any more."""
    key = tuple((field, int(order)) for field, order in index["key"].items())
    return unshardable(index) or key in RETIRED_INDEXES.get(collection, set())


async def _drop_retired_indexes(db: AsyncDatabase[dict[str, Any]], name: str) -> None:
    async for index in await db[name].list_indexes():
        if retired(name, index):
            try:
                await db[name].drop_index(index["name"])
            except OperationFailure as error:
                if error.code != INDEX_NOT_FOUND:  # another instance dropped it first
                    raise
