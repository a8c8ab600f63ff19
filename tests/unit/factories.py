"""Builders of valid inbound events for the unit tests of the rules.

Every event goes through `service.domain.ingest.decode` from a `RawRecord` holding JSON
bytes, exactly as a Kafka record would, so the tests exercise the same validation path as the
service and an invalid builder call fails loudly instead of producing an impossible event.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from service.domain.events import EventType
from service.domain.ingest import RawRecord, Rejection, decode
from service.domain.ledger import Inbound, derive_id
from tests import events

MAX_EVENT_BYTES = 1024 * 1024
BASE_TIME = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)

# Topics per the contract: artifact, audit and feedback events have their own; the rest share
# the lifecycle topic.
TOPIC_OF_TYPE: dict[str, str] = {
    EventType.ARTIFACT_GENERATED: "campaign.artifact-generated",
    EventType.AUDIT_COMPLETED: "campaign.audit-completed",
    EventType.FEEDBACK_SUBMITTED: "campaign.feedback",
}
LIFECYCLE_TOPIC = "campaign.lifecycle"

_ids = itertools.count(1)
_offsets = itertools.count(0)

_UNSET: Any = object()


def topic_of(event_type: str) -> str:
    return TOPIC_OF_TYPE.get(event_type, LIFECYCLE_TOPIC)


def at(seconds: float) -> datetime:
    """A time `seconds` after BASE_TIME (whole milliseconds, as stored)."""
    return BASE_TIME + timedelta(milliseconds=round(seconds * 1000))


def cloud_event(
    event_type: str,
    data: dict[str, Any],
    *,
    source: str = "test",
    id: str | None = None,
    time: datetime | str | None = None,
    **attributes: Any,
) -> dict[str, Any]:
    """`tests.events.cloud_event` with the unit tests' defaults: numbered ids and BASE_TIME, so
    a failing test reads the same at every run."""
    return events.cloud_event(
        event_type,
        data,
        id=id if id is not None else f"e-{next(_ids)}",
        source=source,
        time=BASE_TIME if time is None else time,
        **attributes,
    )


def record(
    value: bytes | dict[str, Any] | list[Any] | None,
    *,
    key: bytes | str | None = _UNSET,
    topic: str | None = None,
    partition: int = 0,
    offset: int | None = None,
) -> RawRecord:
    """A Kafka record; by default keyed by `data.campaign_id` when the value has one."""
    if isinstance(value, dict | list):
        document = value
        value = orjson.dumps(value)
    else:
        document = None
    if key is _UNSET:
        key = None
        if isinstance(document, dict) and isinstance(document.get("data"), dict):
            campaign_id = document["data"].get("campaign_id")
            if isinstance(campaign_id, str):
                key = campaign_id
    if isinstance(key, str):
        key = key.encode("utf-8")
    if topic is None:
        event_type = document.get("type") if isinstance(document, dict) else None
        topic = topic_of(event_type) if isinstance(event_type, str) else LIFECYCLE_TOPIC
    return RawRecord(
        topic=topic,
        partition=partition,
        offset=next(_offsets) if offset is None else offset,
        key=key,
        value=value,
    )


def inbound(raw: RawRecord) -> Inbound:
    decoded = decode(raw, MAX_EVENT_BYTES)
    if isinstance(decoded, Rejection):
        msg = f"the factory built an invalid event: {decoded.reason}: {decoded.detail}"
        raise AssertionError(msg)
    return Inbound(decoded, raw)


def make_event(
    type: str,
    data: dict[str, Any],
    *,
    source: str = "test",
    id: str | None = None,
    time: datetime | str | None = None,
    key: bytes | str | None = _UNSET,
    **attributes: Any,
) -> Inbound:
    """A valid event, decoded from JSON bytes like a Kafka record (raises if invalid)."""
    document = cloud_event(type, data, source=source, id=id, time=time, **attributes)
    return inbound(record(document, key=key))


def _data(campaign: str, fields: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    data = {"campaign_id": campaign, **{k: v for k, v in fields.items() if v is not None}}
    data.update(extra)
    return data


def _envelope(kw: dict[str, Any]) -> dict[str, Any]:
    return {name: kw.pop(name) for name in ("source", "id", "time", "key") if name in kw}


def key_of(source: str, event_id: str) -> str:
    """The stored form of `(source, id)`: length-prefixed, so no two pairs share it."""
    return f"{len(source)}:{source}{event_id}"


def derived_version_id(source: str, event_id: str) -> str:
    """The version id the rules derive for an artifact event without `version_id`."""
    return derive_id("v", key_of(source, event_id))


def generated(
    campaign: str,
    artifact: str,
    version_id: str | None = None,
    *,
    artifact_type: str = "copy",
    content: dict[str, Any] | None = None,
    **extra: Any,
) -> Inbound:
    envelope = _envelope(extra)
    data = _data(
        campaign,
        {
            "artifact_id": artifact,
            "artifact_type": artifact_type,
            "content": content if content is not None else {"text": f"{artifact} {version_id}"},
            "version_id": version_id,
        },
        extra,
    )
    return make_event(EventType.ARTIFACT_GENERATED, data, **envelope)


def audited(campaign: str, version_id: str, outcome: str = "pass", **extra: Any) -> Inbound:
    envelope = _envelope(extra)
    data = _data(campaign, {"version_id": version_id, "outcome": outcome}, extra)
    return make_event(EventType.AUDIT_COMPLETED, data, **envelope)


def feedback(
    campaign: str,
    artifact: str,
    version_id: str,
    text: str = "make it shorter",
    **extra: Any,
) -> Inbound:
    envelope = _envelope(extra)
    data = _data(
        campaign,
        {"artifact_id": artifact, "version_id": version_id, "feedback_text": text},
        extra,
    )
    return make_event(EventType.FEEDBACK_SUBMITTED, data, **envelope)


def created(campaign: str, name: str = "Spring launch", **extra: Any) -> Inbound:
    envelope = _envelope(extra)
    return make_event(
        EventType.CAMPAIGN_CREATED, _data(campaign, {"name": name}, extra), **envelope
    )


def status_changed(campaign: str, status: str, **extra: Any) -> Inbound:
    envelope = _envelope(extra)
    return make_event(
        EventType.STATUS_CHANGED, _data(campaign, {"status": status}, extra), **envelope
    )


def run_started(campaign: str, run_id: str, **extra: Any) -> Inbound:
    envelope = _envelope(extra)
    return make_event(EventType.RUN_STARTED, _data(campaign, {"run_id": run_id}, extra), **envelope)


def run_completed(campaign: str, run_id: str, status: str = "completed", **extra: Any) -> Inbound:
    envelope = _envelope(extra)
    return make_event(
        EventType.RUN_COMPLETED,
        _data(campaign, {"run_id": run_id, "status": status}, extra),
        **envelope,
    )


def approved(campaign: str, version_id: str, **extra: Any) -> Inbound:
    envelope = _envelope(extra)
    return make_event(
        EventType.VERSION_APPROVED, _data(campaign, {"version_id": version_id}, extra), **envelope
    )


def archived(campaign: str, version_id: str, **extra: Any) -> Inbound:
    envelope = _envelope(extra)
    return make_event(
        EventType.VERSION_ARCHIVE_REQUESTED,
        _data(campaign, {"version_id": version_id}, extra),
        **envelope,
    )


def delete_requested(campaign: str, **extra: Any) -> Inbound:
    envelope = _envelope(extra)
    return make_event(EventType.DELETE_REQUESTED, _data(campaign, {}, extra), **envelope)


def restore_requested(campaign: str, **extra: Any) -> Inbound:
    envelope = _envelope(extra)
    return make_event(EventType.RESTORE_REQUESTED, _data(campaign, {}, extra), **envelope)
