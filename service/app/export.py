"""A campaign's export document: every stored document of it as one JSON object (backup).

One function serves `GET /campaigns/{id}/export` and `campaign-ledger export`, so the two
give the same bytes. The document is written as it is read: memory stays flat however long
the campaign's history is.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any, Protocol

import orjson

from service.adapters.mongo_schema import ENTITY_COLLECTIONS
from service.domain.state import iso


class ExportReads(Protocol):
    async def snapshot_document(self, campaign_id: str) -> dict[str, Any] | None: ...

    def export(self, collection: str, campaign_id: str) -> AsyncIterator[dict[str, Any]]: ...


class CampaignNotFound(LookupError):
    """No campaign (deleted or not) has this id."""


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(type(value).__name__)


def dumps(value: Any) -> bytes:
    """Stored documents as JSON: times as RFC 3339 (UTC), binary as base64."""
    return orjson.dumps(value, default=_default, option=orjson.OPT_PASSTHROUGH_DATETIME)


async def export_campaign(reads: ExportReads, campaign_id: str) -> AsyncIterator[bytes]:
    """The export document's bytes, after checking the campaign exists (deleted ones too).

    Raises CampaignNotFound before anything is written, so a caller can still answer 404 or
    exit non-zero instead of emitting half a document.
    """
    if await reads.snapshot_document(campaign_id) is None:
        raise CampaignNotFound(campaign_id)
    return _stream(reads, campaign_id)


async def _stream(reads: ExportReads, campaign_id: str) -> AsyncIterator[bytes]:
    """{"campaign_id": …, "campaigns": […], "artifacts": […], …}, written as it is read."""
    yield b'{"campaign_id":' + dumps(campaign_id)
    for collection in ENTITY_COLLECTIONS:
        yield b"," + dumps(collection) + b":["
        separator = b""
        async for doc in reads.export(collection, campaign_id):
            yield separator + dumps(doc)
            separator = b","
        yield b"]"
    yield b"}"
