"""The ledger's state as MongoDB documents and back: one place for each mapping."""

from __future__ import annotations

import hashlib
from typing import Any

from service.adapters import mongo_schema as cols
from service.app.store import StoreRejected
from service.domain.events import Event
from service.domain.ingest import RawRecord, decode, record_document, record_from_document
from service.domain.ledger import HeldEvent, Inbound, Kind, made_by
from service.domain.state import VersionState

Document = dict[str, Any]

# Where each kind of record the rules produce is stored.
COLLECTION_OF: dict[Kind, str] = {
    "campaign": cols.CAMPAIGNS,
    "artifact": cols.ARTIFACTS,
    "run": cols.RUNS,
    "version": cols.VERSIONS,
    "audit_report": cols.AUDIT_REPORTS,
    "iteration_log": cols.ITERATION_LOGS,
}
KIND_OF: dict[str, Kind] = {collection: kind for kind, collection in COLLECTION_OF.items()}
# What a version's state needs of its document (the content may be large).
VERSION_STATE_FIELDS = {"content": 0, "metadata": 0, "extra": 0, "agent": 0}


def mark_id(key: str) -> str:
    """A compact, fixed-size id for an event key (128 bits of SHA-256)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


def mark_document(key: str, campaign_id: str) -> Document:
    """The processed-event mark of an event key, stored with its campaign (the shard key)."""
    return {"_id": mark_id(key), "campaign_id": campaign_id}


def version_state(doc: Document) -> VersionState:
    return VersionState(
        version_id=doc["_id"],
        campaign_id=doc["campaign_id"],
        artifact_id=doc["artifact_id"],
        version_number=doc["version_number"],
        created_at=doc["created_at"],
        content_sha256=doc["content_sha256"],
        audit_state=doc["audit_state"],
        audit_attempts=doc["audit_attempts"],
        feedback_count=doc.get("feedback_count", 0),
        archived=doc["archived"],
        approved=doc["approved"],
        made_by=made_by(doc),
    )


def held_document(held: HeldEvent) -> Document:
    record = held.inbound.record
    return {
        "_id": mark_id(held.key),
        "campaign_id": held.inbound.event.campaign_id,
        "version_id": held.version_id,
        "event_type": held.inbound.event.type.value,
        "seq": held.seq,
        "held_at": held.held_at,
        # Headers and the timestamp too: a binary-mode event lives partly in them.
        "record": record_document(record),
    }


def held_record(doc: Document) -> RawRecord:
    return record_from_document(doc["record"])


def held_event(doc: Document) -> HeldEvent:
    """A stored held event, decoded again from its original record."""
    record = held_record(doc)
    event = decode(record, max_event_bytes=len(record.value or b""))
    if not isinstance(event, Event):  # it decoded when it was held
        msg = f"held event {doc['_id']} no longer decodes: {event.detail}"
        raise StoreRejected(msg)
    return HeldEvent(
        inbound=Inbound(event=event, record=record),
        version_id=doc["version_id"],
        seq=doc["seq"],
        held_at=doc["held_at"],
    )
