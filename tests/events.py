"""The inbound events of every test folder: CloudEvents 1.0 documents in structured mode.

One builder, so the envelope producers send is written once; what differs between folders
(deterministic ids and times in unit tests, a real producer's `datacontenttype`, an event
without `time`) is a parameter, not another copy.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

SPECVERSION = "1.0"

# `time=NOW` (the default): the moment the event is built.
NOW: Any = object()


def iso_z(value: datetime) -> str:
    """UTC, whole milliseconds, `Z`: how producers write times and how the ledger keeps them."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def cloud_event(
    event_type: str,
    data: dict[str, Any],
    *,
    id: str | None = None,
    source: str = "tests",
    time: datetime | str | None = NOW,
    **attributes: Any,
) -> dict[str, Any]:
    """A CloudEvents 1.0 structured-mode document (a dict, not yet bytes).

    `id` defaults to a fresh one, so no two tests share an event; `time` is a datetime, a
    string sent as it is (e.g. a malformed one), or None for an event without it. Other
    attributes (`subject`, `datacontenttype`, extensions) follow the data.
    """
    event: dict[str, Any] = {
        "specversion": SPECVERSION,
        "id": id if id is not None else uuid.uuid4().hex,
        "source": source,
        "type": str(event_type),
    }
    if time is NOW:
        time = datetime.now(UTC)
    if time is not None:
        event["time"] = iso_z(time) if isinstance(time, datetime) else time
    event["data"] = data
    return event | attributes


def generated(
    campaign: str,
    artifact: str,
    version: str | None = None,
    *,
    content: Any = None,
    artifact_type: str = "copy",
    **data: Any,
) -> dict[str, Any]:
    """`campaign.artifact.generated`; without `version` the ledger derives the version's id."""
    body: dict[str, Any] = {
        "campaign_id": campaign,
        "artifact_id": artifact,
        "artifact_type": artifact_type,
    }
    if version is not None:
        body["version_id"] = version
    body["content"] = content if content is not None else {"text": f"content of {version}"}
    return cloud_event("campaign.artifact.generated", body | data)


def audited(campaign: str, version: str, outcome: str, **data: Any) -> dict[str, Any]:
    """`campaign.audit.completed` of one version."""
    body = {"campaign_id": campaign, "version_id": version, "outcome": outcome}
    return cloud_event("campaign.audit.completed", body | data)


def lifecycle(event_type: str, campaign: str, **data: Any) -> dict[str, Any]:
    """A campaign's own event (`campaign.created`, `campaign.status.changed`, ...)."""
    return cloud_event(event_type, {"campaign_id": campaign, **data})
