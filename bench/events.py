"""The artifact events of `make bench-compare`, the same for every system it measures.

Campaigns take turns, as many generation agents writing at once would: version n of every
campaign, then version n + 1. Each campaign cycles over three artifacts. About 420 bytes each.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

KINDS = ("copy", "short_copy", "visual_concept")
BASE_TIME = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


def campaign_ids(tag: str, campaigns: int) -> list[str]:
    return [f"{tag}-c{n:04d}" for n in range(campaigns)]


def event_id(campaign: str, n: int) -> str:
    """The CloudEvent id of version n of a campaign (the connector's document `_id`)."""
    return f"{campaign}.e{n}"


def version_id(campaign: str, n: int) -> str:
    """The version id of version n of a campaign (the service's version `_id`)."""
    return f"{campaign}.{KINDS[n % len(KINDS)]}.v{n}"


def artifact_event(campaign: str, n: int) -> dict[str, Any]:
    kind = KINDS[n % len(KINDS)]
    artifact = f"{campaign}.{kind}"
    return {
        "specversion": "1.0",
        "id": event_id(campaign, n),
        "source": "bench/generation-agent",
        "type": "campaign.artifact.generated",
        "time": (BASE_TIME + timedelta(seconds=n)).isoformat().replace("+00:00", "Z"),
        "data": {
            "campaign_id": campaign,
            "artifact_id": artifact,
            "artifact_type": kind,
            "version_id": version_id(campaign, n),
            "content": {
                "headline": f"Spring launch, take {n}",
                "body": "Fresh picks for warm days: light layers, bright colours, easy fits.",
            },
        },
    }


def artifact_events(
    tag: str, campaigns: int, versions: int, *, first_version: int = 1
) -> list[tuple[bytes, bytes]]:
    """(key, value) records, campaign by campaign in turn."""
    ids = campaign_ids(tag, campaigns)
    return [
        (campaign.encode(), orjson.dumps(artifact_event(campaign, n)))
        for n in range(first_version, first_version + versions)
        for campaign in ids
    ]


def version_document(event: dict[str, Any]) -> dict[str, Any]:
    """A document shaped like the service's stored version of this event."""
    data = event["data"]
    time = datetime.fromisoformat(event["time"])
    return {
        "_id": data["version_id"],
        "version_id": data["version_id"],
        "campaign_id": data["campaign_id"],
        "artifact_id": data["artifact_id"],
        "artifact_type": data["artifact_type"],
        "version_number": int(data["version_id"].rsplit(".v", 1)[1]),
        "created_at": time,
        "content": data["content"],
        "content_sha256": hashlib.sha256(orjson.dumps(data["content"])).hexdigest(),
        "extra": {},
        "source_event": {"source": event["source"], "id": event["id"], "time": time},
        "audit_state": "pending",
        "audit_attempts": 0,
        "feedback_count": 0,
        "archived": False,
        "approved": False,
    }
