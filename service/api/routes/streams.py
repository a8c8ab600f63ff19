"""Server-Sent Events: GET /campaigns/{id}/stream and GET /stream (contract: live snapshots).

A plain StreamingResponse writing the three SSE fields we need; the fan-out, the limits and
skip-to-latest live in `service.app.streams`, the shutdown in `Service.begin_stop`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException
from fastapi.responses import StreamingResponse

from service.api.common import NOT_FOUND, CampaignId, Problem, unknown_campaign
from service.app import telemetry
from service.app.streams import Snapshot, SnapshotFeed, SnapshotReader, StreamsFull, Subscription

EVENT_STREAM = "text/event-stream"
RETRY_AFTER_SECONDS = 5
KEEPALIVE = b": keep-alive\n\n"
_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
_STREAM_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {EVENT_STREAM: {"schema": {"type": "string"}}},
        "description": "`event: snapshot` (or `deleted`), `id`, `traceparent` (when the "
        "published snapshot carries one), `data`: the snapshot as one line of JSON; a "
        "comment line at least every 15 s while idle",
    },
    503: {
        "model": Problem,
        "description": "This instance serves its maximum of streams, or is stopping; "
        "try again after `Retry-After` seconds",
    },
}


def message(snapshot: Snapshot, event_id: str) -> bytes:
    kind = b"deleted" if snapshot.deleted else b"snapshot"
    if snapshot.traceparent is not None:
        return _traced_message(kind, event_id, snapshot)
    return b"event: %s\nid: %s\ndata: %s\n\n" % (kind, event_id.encode(), snapshot.body)


def _traced_message(kind: bytes, event_id: str, snapshot: Snapshot) -> bytes:
    """A `traceparent` field before `data`: the trace the published snapshot carries, so a
    dashboard can continue it. EventSource ignores fields it does not know (per the HTML
    specification), so browsers see the same message."""
    trace = "".join(ch for ch in snapshot.traceparent or "" if ch not in "\r\n").encode()
    return b"event: %s\nid: %s\ntraceparent: %s\ndata: %s\n\n" % (
        kind,
        event_id.encode(),
        trace,
        snapshot.body,
    )


def _last_event_id(value: str | None) -> int:
    """The revision the client last saw; anything else means it saw nothing of this stream."""
    value = (value or "").strip()
    return int(value) if value.isdigit() and len(value) <= 18 else 0


def router(feed: SnapshotFeed, reader: SnapshotReader, keepalive_seconds: float) -> APIRouter:
    api = APIRouter(tags=["streams"])

    def subscribe(campaign_id: str | None) -> Subscription:
        try:
            return feed.subscribe(campaign_id)
        except StreamsFull as error:
            telemetry.STREAM_REFUSED.inc()
            raise HTTPException(
                503, str(error), {"Retry-After": str(RETRY_AFTER_SECONDS)}
            ) from None

    @api.get(
        "/campaigns/{campaign_id}/stream",
        response_class=StreamingResponse,
        responses={**_STREAM_RESPONSES, **NOT_FOUND},
        summary="The campaign's snapshot now, then each newly published revision (SSE)",
    )
    async def campaign_stream(
        campaign_id: CampaignId,
        last_event_id: Annotated[
            str | None,
            Header(
                alias="Last-Event-ID",
                description="The last revision received: the first message is then sent "
                "only when the current revision is above it",
            ),
        ] = None,
    ) -> StreamingResponse:
        # Subscribed before the current snapshot is read: nothing published in between is
        # missed (what is both read and published is sent once: revisions only increase).
        subscription = subscribe(campaign_id)
        try:
            current = await reader.current(campaign_id)
        except BaseException:
            subscription.close()
            raise
        if current is None:
            subscription.close()
            raise unknown_campaign(campaign_id)
        return StreamingResponse(
            _campaign_events(subscription, current, _last_event_id(last_event_id)),
            media_type=EVENT_STREAM,
            headers=_HEADERS,
        )

    async def _campaign_events(
        subscription: Subscription, current: Snapshot, seen: int
    ) -> AsyncIterator[bytes]:
        try:
            pending: list[Snapshot] | None = [current]
            while pending is not None:
                if not pending:
                    yield KEEPALIVE
                for snapshot in pending:
                    if snapshot.revision > seen:
                        seen = snapshot.revision
                        yield message(snapshot, str(snapshot.revision))
                pending = await subscription.next(keepalive_seconds)
        finally:
            subscription.close()

    @api.get(
        "/stream",
        response_class=StreamingResponse,
        responses=_STREAM_RESPONSES,
        summary="Every campaign's snapshots as they are published (SSE, no backlog)",
    )
    async def all_stream() -> StreamingResponse:
        subscription = subscribe(None)
        return StreamingResponse(
            _all_events(subscription), media_type=EVENT_STREAM, headers=_HEADERS
        )

    async def _all_events(subscription: Subscription) -> AsyncIterator[bytes]:
        try:
            yield KEEPALIVE  # the headers and a first byte at once: the client knows it is on
            while (pending := await subscription.next(keepalive_seconds)) is not None:
                if not pending:
                    yield KEEPALIVE
                for snapshot in pending:
                    yield message(snapshot, f"{snapshot.campaign_id}:{snapshot.revision}")
        finally:
            subscription.close()

    return api
