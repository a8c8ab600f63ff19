"""An in-memory stand-in for the MongoDB store, for unit tests of the rules only.

It mirrors `service.adapters.mongo_store.Transaction` (load / load_missing / write): the same
keys go into the `View`, a key looked up and not found maps to None, inserts refuse a second
document with the same `_id` (or the same value of a unique index) as MongoDB would, patches
are merged field by field ($set), "version" patches never create a document (no upsert) and
the campaign snapshot is written with the same compare-and-set on the revision read; a
refused write stores nothing. tests/contract/test_transaction_contract.py runs the same
checks against this store and MongoDB, so the two cannot drift apart.

Campaign states are kept as deep copies and read back through `snapshot()` + `private()` +
`CampaignState.restore`, which is what a round trip through MongoDB amounts to.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from service.adapters import mongo_schema as cols
from service.adapters.mongo_documents import COLLECTION_OF, mark_id, version_state
from service.domain.ledger import (
    Changes,
    HeldEvent,
    Inbound,
    Missing,
    SemanticRejection,
    View,
    apply_batch,
    prefetch_keys,
)
from service.domain.state import CampaignState, VersionState
from tests.unit.factories import BASE_TIME

Record = dict[str, Any]

_ENTITY_COLLECTION = {
    "campaign": cols.CAMPAIGNS,
    "artifact": cols.ARTIFACTS,
    "run": cols.RUNS,
    "version": cols.VERSIONS,
}
# The unique indexes of service/adapters/mongo_schema.py, which a wrong insert would violate.
_UNIQUE = {
    cols.VERSIONS: ("artifact_id", "version_number"),
    cols.AUDIT_REPORTS: ("version_id", "attempt"),
    cols.ITERATION_LOGS: ("version_id", "feedback_number"),
}
_VERSION_MARKS = ("audit_state", "audit_attempts", "feedback_count", "archived", "approved")
MAX_MISSING_ROUNDS = 1000


class DuplicateKey(AssertionError):
    """What MongoDB would answer with E11000: the store refuses the write."""


class ConcurrentUpdate(AssertionError):
    """The compare-and-set on a campaign's revision missed."""


@dataclass
class MemoryStore:
    # processed-event marks: mark id -> (event key, campaign id)
    processed: dict[str, tuple[str, str]] = field(default_factory=dict)
    # the campaign snapshot documents, as the CampaignState the rules produced
    campaign_states: dict[str, CampaignState] = field(default_factory=dict)
    # entity collections: _id -> document
    campaigns: dict[str, Record] = field(default_factory=dict)
    artifacts: dict[str, Record] = field(default_factory=dict)
    runs: dict[str, Record] = field(default_factory=dict)
    version_records: dict[str, Record] = field(default_factory=dict)
    versions: dict[str, VersionState] = field(default_factory=dict)
    audit_reports: dict[str, Record] = field(default_factory=dict)
    iteration_logs: dict[str, Record] = field(default_factory=dict)
    # held events: mark id -> HeldEvent (loaded per version id, ordered by seq)
    held: dict[str, HeldEvent] = field(default_factory=dict)
    # when False, campaigns load as plain deep copies instead of the MongoDB round trip
    roundtrip: bool = True

    # ---- reads (Transaction.load / load_missing) ---------------------------------------

    def load_view(self, keys: Mapping[str, Iterable[str]]) -> View:
        view = View()
        self.load(view, keys)
        return view

    def load(self, view: View, keys: Mapping[str, Iterable[str]]) -> None:
        if ids := set(keys.get("processed", ())):
            view.checked_events.update(ids)
            view.processed.update(k for k in ids if mark_id(k) in self.processed)
        if ids := set(keys.get("campaign", ())):
            for campaign_id in ids:
                view.campaigns[campaign_id] = self.campaign_state(campaign_id)
        if ids := set(keys.get("artifact", ())):
            for artifact_id in ids:
                doc = self.artifacts.get(artifact_id)
                view.artifact_owners[artifact_id] = (
                    (doc["campaign_id"], doc["artifact_type"]) if doc is not None else None
                )
        if ids := set(keys.get("run", ())):
            for run_id in ids:
                doc = self.runs.get(run_id)
                view.run_owners[run_id] = doc["campaign_id"] if doc is not None else None
        if ids := set(keys.get("version", ())):
            for version_id in ids:
                doc = self.version_records.get(version_id)
                view.versions[version_id] = version_state(doc) if doc is not None else None
        if ids := set(keys.get("held", ())):
            for version_id in ids:
                view.held[version_id] = self.held_for(version_id)

    def fill(self, view: View, missing: Missing) -> None:
        if missing.kind == "unarchived":
            found = sorted(
                (
                    doc
                    for doc in self.version_records.values()
                    if doc["artifact_id"] == missing.key and doc["archived"] is False
                ),
                key=lambda doc: doc["version_number"],
                reverse=True,
            )[: missing.limit]
            view.unarchived[missing.key] = ([version_state(d) for d in found], missing.limit)
        elif missing.kind in {"processed", "campaign", "artifact", "run", "version", "held"}:
            self.load(view, {missing.kind: {missing.key}})
        else:  # pragma: no cover - a kind the real store does not know either
            msg = f"unknown Missing kind {missing.kind!r}"
            raise AssertionError(msg)

    def campaign_state(self, campaign_id: str) -> CampaignState | None:
        stored = self.campaign_states.get(campaign_id)
        if stored is None:
            return None
        if self.roundtrip:
            return CampaignState.restore(stored.snapshot(), stored.private())
        return copy.deepcopy(stored)

    def held_for(self, version_id: str) -> list[HeldEvent]:
        return sorted(
            (h for h in self.held.values() if h.version_id == version_id), key=lambda h: h.seq
        )

    # ---- writes (Transaction.write) ------------------------------------------------------

    def commit(self, changes: Changes, view: View | None = None) -> None:
        """Apply `changes` as one transaction; with `view`, check revisions like MongoDB.

        All or nothing, as a transaction is: a refused write leaves the store as it was.
        """
        # Every step that can refuse only adds or removes entries, so copies of the mappings
        # undo them; patches change stored documents in place, so they come last, when no
        # refusal can follow.
        before = {k: copy.copy(v) for k, v in vars(self).items() if isinstance(v, dict)}
        try:
            self._apply(changes, view)
        except (DuplicateKey, ConcurrentUpdate):
            vars(self).update(before)
            raise

    def _apply(self, changes: Changes, view: View | None) -> None:
        for kind, records in changes.inserts.items():
            for doc in records:
                self._insert(COLLECTION_OF[kind], copy.deepcopy(doc))
        for key, campaign_id in changes.processed:
            mark = mark_id(key)
            if mark in self.processed:
                raise DuplicateKey(f"processed mark for {key!r} already stored")
            self.processed[mark] = (key, campaign_id)
        for held in changes.held:
            mark = mark_id(held.key)
            if mark in self.held:
                raise DuplicateKey(f"held event {held.key!r} already stored")
            self.held[mark] = held
        for key in changes.released:
            self.held.pop(mark_id(key), None)
        for campaign_id, campaign in changes.campaigns.items():
            if view is not None:
                read = view.campaigns.get(campaign_id)
                stored = self.campaign_states.get(campaign_id)
                if read is None and stored is not None:
                    raise DuplicateKey(f"campaign {campaign_id} inserted twice")
                if read is not None and (stored is None or stored.revision != read.revision):
                    raise ConcurrentUpdate(f"campaign {campaign_id} changed under the batch")
            self.campaign_states[campaign_id] = copy.deepcopy(campaign)
        for (entity, entity_id), fields in changes.patches.items():
            self._patch(entity, entity_id, copy.deepcopy(fields))
        for campaign_id, campaign in changes.campaigns.items():  # the campaign entity
            self._patch("campaign", campaign_id, copy.deepcopy(campaign.entity()))

    def _collection(self, name: str) -> dict[str, Record]:
        return {
            cols.VERSIONS: self.version_records,
            cols.AUDIT_REPORTS: self.audit_reports,
            cols.ITERATION_LOGS: self.iteration_logs,
            cols.CAMPAIGNS: self.campaigns,
            cols.ARTIFACTS: self.artifacts,
            cols.RUNS: self.runs,
        }[name]

    def _insert(self, collection: str, doc: Record) -> None:
        docs = self._collection(collection)
        if doc["_id"] in docs:
            raise DuplicateKey(f"{collection} already holds _id {doc['_id']!r}")
        unique = _UNIQUE.get(collection)
        if unique is not None:
            value = tuple(doc.get(name) for name in unique)
            for other in docs.values():
                if tuple(other.get(name) for name in unique) == value:
                    raise DuplicateKey(
                        f"{collection} already holds {dict(zip(unique, value, strict=True))}"
                    )
        docs[doc["_id"]] = doc
        if collection == cols.VERSIONS:
            self.versions[doc["_id"]] = version_state(doc)

    def _patch(self, entity: str, entity_id: str, fields: Record) -> None:
        docs = self._collection(_ENTITY_COLLECTION[entity])
        if entity == "campaign":
            fields = {"campaign_id": entity_id, **fields}
        doc = docs.get(entity_id)
        if doc is None:
            if entity == "version":  # no upsert: a version is only ever inserted whole
                return
            doc = docs[entity_id] = {"_id": entity_id}
        doc.update(fields)
        if entity == "version":
            state = self.versions[entity_id]
            for name in _VERSION_MARKS:
                if name in fields:
                    setattr(state, name, fields[name])

    # ---- inspection ------------------------------------------------------------------------

    def snapshot(self, campaign_id: str) -> dict[str, Any] | None:
        state = self.campaign_states.get(campaign_id)
        return state.snapshot() if state is not None else None

    def iterations(self, campaign_id: str) -> list[Record]:
        """A campaign's iteration logs oldest first, as `MongoStore.iteration_page` sorts them:
        by submission time, then `_id`."""
        return sorted(
            (log for log in self.iteration_logs.values() if log["campaign_id"] == campaign_id),
            key=lambda log: (log["submitted_at"], log["_id"]),
        )

    def documents(self) -> dict[str, Any]:
        """Everything stored, comparable between two stores (held events without times)."""
        return {
            "processed": dict(self.processed),
            "campaign_states": {
                k: v.snapshot() | v.private() for k, v in self.campaign_states.items()
            },
            "campaigns": copy.deepcopy(self.campaigns),
            "artifacts": copy.deepcopy(self.artifacts),
            "runs": copy.deepcopy(self.runs),
            "versions": copy.deepcopy(self.version_records),
            "audit_reports": copy.deepcopy(self.audit_reports),
            "iteration_logs": copy.deepcopy(self.iteration_logs),
            "held": {mark: (h.version_id, h.inbound.event.key) for mark, h in self.held.items()},
        }


@dataclass
class Delivery:
    """What delivering some batches did: the published stream and the rest of the output."""

    snapshots: list[dict[str, Any]] = field(default_factory=list)
    rejections: list[SemanticRejection] = field(default_factory=list)
    changes: list[Changes] = field(default_factory=list)
    missing: list[tuple[str, str, int]] = field(default_factory=list)

    def revisions(self, campaign_id: str) -> list[int]:
        return [s["revision"] for s in self.snapshots if s["campaign_id"] == campaign_id]

    def last(self, campaign_id: str) -> dict[str, Any] | None:
        mine = [s for s in self.snapshots if s["campaign_id"] == campaign_id]
        return mine[-1] if mine else None

    def reasons(self) -> list[str]:
        return [r.reason for r in self.rejections]


@dataclass
class Clock:
    """Batch times: each batch is processed one second after the previous one."""

    now: datetime = BASE_TIME + timedelta(days=1)
    seq: int = 1_000

    def tick(self, events: int) -> tuple[datetime, int]:
        now, seq = self.now, self.seq
        self.now += timedelta(seconds=1)
        self.seq += max(events, 1)
        return now, seq


def deliver_batch(
    store: MemoryStore, batch: Sequence[Inbound], delivery: Delivery, clock: Clock
) -> Changes:
    """One batch as the processor runs it: prefetch, rules until nothing is missing, write."""
    now, seq_base = clock.tick(len(batch))
    view = store.load_view(prefetch_keys(batch))
    for _ in range(MAX_MISSING_ROUNDS):
        try:
            changes = apply_batch(batch, view, now=now, seq_base=seq_base)
            break
        except Missing as missing:
            delivery.missing.append((missing.kind, missing.key, missing.limit))
            store.fill(view, missing)
    else:  # pragma: no cover - the rules keep asking for the same thing
        msg = f"the rules never finished: last missing {delivery.missing[-1]}"
        raise AssertionError(msg)
    store.commit(changes, view)
    delivery.changes.append(changes)
    delivery.snapshots.extend(changes.snapshots)
    delivery.rejections.extend(changes.rejections)
    return changes


def deliver(
    store: MemoryStore,
    events_batches: Iterable[Sequence[Inbound]],
    *,
    clock: Clock | None = None,
) -> Delivery:
    """Deliver each batch in turn; the result's `snapshots` is the published stream."""
    clock = clock or Clock()
    delivery = Delivery()
    for batch in events_batches:
        deliver_batch(store, list(batch), delivery, clock)
    return delivery


def one_by_one(events: Iterable[Inbound]) -> list[list[Inbound]]:
    return [[event] for event in events]
