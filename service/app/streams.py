"""The snapshot feed: published snapshots fanned out to this instance's stream clients.

Each instance follows the published snapshots once (`service.adapters.kafka.follower`) and hands
every revision to `SnapshotFeed.published`. From there:

- every open stream that wants that campaign gets it, without waiting on any other stream:
  a subscription keeps at most `backlog` pending revisions per campaign (a burst of
  revisions published together reaches a client that keeps up whole). Snapshots are whole
  states, so a client that falls further behind loses its oldest pending revisions and goes
  on with the newest (skip-to-latest, counted). A slow client costs at most `backlog`
  references to shared snapshots per campaign, never a growing queue.
- the newest snapshot of recently seen campaigns stays in a bounded LRU cache, so the HTTP
  snapshot read can answer without MongoDB while the entry is fresh.

Ordering rule that keeps "the HTTP snapshot is never older than what a stream of this
instance sent": the cache is updated before any subscriber is offered a revision, and the
cache only ever moves forward (a MongoDB read newer than the cache replaces it, an older one
does not).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from service.app import telemetry
from service.app.export import dumps


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One revision of a campaign's snapshot, encoded once and shared by every reader."""

    campaign_id: str
    revision: int
    deleted: bool
    body: bytes  # the snapshot as one line of JSON (the HTTP body and the SSE data line)
    versions: int
    audit_reports: int
    # The published event's `traceparent` (tracing on where it was published), which a
    # stream message repeats; None for a snapshot read from MongoDB.
    traceparent: str | None = None

    @classmethod
    def of(
        cls, snapshot: dict[str, Any], body: bytes | None = None, traceparent: str | None = None
    ) -> Snapshot:
        counts = snapshot.get("counts", {})
        return cls(
            campaign_id=snapshot["campaign_id"],
            revision=snapshot["revision"],
            deleted=bool(snapshot.get("deleted")),
            body=body if body is not None else orjson.dumps(snapshot),
            versions=counts.get("versions", 0),
            audit_reports=counts.get("audit_reports", 0),
            traceparent=traceparent,
        )

    @property
    def etag(self) -> str:
        return f'"{self.revision}"'


@dataclass(slots=True)
class _Entry:
    snapshot: Snapshot
    confirmed_at: float  # monotonic time the entry was last known current
    published: int  # the highest revision seen on the snapshot topic


class StreamsFull(Exception):
    """This instance already serves its maximum of open streams."""


@dataclass(eq=False)
class Subscription:
    """One open stream: the newest pending snapshot per campaign, and a wake-up."""

    feed: SnapshotFeed
    campaign_id: str | None  # None: every campaign (GET /stream)
    pending: OrderedDict[str, deque[Snapshot]] = field(default_factory=OrderedDict)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    closed: bool = False
    skipped: int = 0

    def offer(self, snapshot: Snapshot) -> None:
        waiting = self.pending.get(snapshot.campaign_id)
        if waiting is None:
            if len(self.pending) >= self.feed.max_pending:
                # A stuck client of GET /stream holding too many campaigns: end it (it can
                # reconnect) rather than hold a growing set.
                self.close()
                return
            waiting = self.pending[snapshot.campaign_id] = deque(maxlen=self.feed.backlog)
        elif waiting[-1].revision >= snapshot.revision:
            return
        if len(waiting) == waiting.maxlen:
            # The client has not taken its oldest pending revision yet: it skips it.
            self.skipped += 1
            telemetry.STREAM_SKIPPED.inc()
        waiting.append(snapshot)
        self.wake.set()

    async def next(self, timeout: float) -> list[Snapshot] | None:
        """What is pending (possibly nothing, after `timeout`); None once closed."""
        if not self.pending and not self.closed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout)
        self.wake.clear()
        if self.closed:
            return None
        taken = [snapshot for waiting in self.pending.values() for snapshot in waiting]
        self.pending.clear()
        return taken

    def close(self) -> None:
        self.closed = True
        self.wake.set()
        self.feed.unsubscribe(self)


class SnapshotFeed:
    def __init__(
        self,
        *,
        max_streams: int,
        cache_entries: int,
        cache_seconds: float,
        backlog: int = 16,
        max_pending: int = 10_000,
    ) -> None:
        self.max_streams = max_streams
        self.backlog = backlog
        self.cache_entries = cache_entries
        self.cache_seconds = cache_seconds
        self.max_pending = max_pending
        self._cache: OrderedDict[str, _Entry] = OrderedDict()
        self._by_campaign: dict[str, set[Subscription]] = {}
        self._everyone: set[Subscription] = set()
        self._open = 0
        self.closing = False

    # ---- input ---------------------------------------------------------------------------

    def published(self, snapshot: Snapshot) -> None:
        """A revision read from the snapshot topic: cache it, then offer it to the streams."""
        entry = self._cache.get(snapshot.campaign_id)
        now = time.monotonic()
        if entry is None:
            self._store(_Entry(snapshot, now, snapshot.revision))
        else:
            if snapshot.revision <= entry.published:
                return  # republished after a crash or rebalance: already handed out
            entry.published = snapshot.revision
            if snapshot.revision >= entry.snapshot.revision:
                entry.snapshot = snapshot
            entry.confirmed_at = now
            self._cache.move_to_end(snapshot.campaign_id)
        for subscription in (*self._by_campaign.get(snapshot.campaign_id, ()), *self._everyone):
            subscription.offer(snapshot)

    def remember(self, snapshot: Snapshot) -> Snapshot:
        """A snapshot read from MongoDB; returns the newest this instance knows of."""
        entry = self._cache.get(snapshot.campaign_id)
        now = time.monotonic()
        if entry is None:
            # `published` 0: a later message of the topic is still handed to the streams.
            self._store(_Entry(snapshot, now, 0))
            return snapshot
        if snapshot.revision >= entry.snapshot.revision:
            entry.snapshot = snapshot
        entry.confirmed_at = now
        self._cache.move_to_end(snapshot.campaign_id)
        return entry.snapshot

    def forget(self, campaign_id: str) -> None:
        """The campaign is gone from MongoDB (purged)."""
        self._cache.pop(campaign_id, None)

    def _store(self, entry: _Entry) -> None:
        self._cache[entry.snapshot.campaign_id] = entry
        while len(self._cache) > self.cache_entries:
            self._cache.popitem(last=False)

    # ---- reads -----------------------------------------------------------------------------

    def fresh(self, campaign_id: str) -> Snapshot | None:
        """The cached snapshot when it was confirmed current within `cache_seconds`."""
        entry = self._cache.get(campaign_id)
        if entry is None or time.monotonic() - entry.confirmed_at > self.cache_seconds:
            return None
        telemetry.SNAPSHOT_CACHE.labels("hit").inc()
        return entry.snapshot

    def cached(self, campaign_id: str) -> Snapshot | None:
        entry = self._cache.get(campaign_id)
        return entry.snapshot if entry is not None else None

    # ---- streams ---------------------------------------------------------------------------

    def subscribe(self, campaign_id: str | None) -> Subscription:
        if self.closing:
            raise StreamsFull("the service is stopping")
        if self._open >= self.max_streams:
            raise StreamsFull(f"this instance already serves {self._open} streams")
        subscription = Subscription(self, campaign_id)
        if campaign_id is None:
            self._everyone.add(subscription)
        else:
            self._by_campaign.setdefault(campaign_id, set()).add(subscription)
        self._open += 1
        telemetry.STREAM_CLIENTS.set(self._open)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        if subscription.campaign_id is None:
            found = subscription in self._everyone
            self._everyone.discard(subscription)
        else:
            group = self._by_campaign.get(subscription.campaign_id, set())
            found = subscription in group
            group.discard(subscription)
            if not group:
                self._by_campaign.pop(subscription.campaign_id, None)
        if found:
            self._open -= 1
            telemetry.STREAM_CLIENTS.set(self._open)

    @property
    def open_streams(self) -> int:
        return self._open

    def _subscriptions(self) -> Iterator[Subscription]:
        yield from self._everyone
        for group in self._by_campaign.values():
            yield from group

    def close(self) -> None:
        """Stopping: refuse new streams and end every open one now."""
        self.closing = True
        for subscription in list(self._subscriptions()):
            subscription.close()


@dataclass(frozen=True, slots=True)
class RecentDeadLetter:
    received_at: float  # epoch seconds (the Kafka record's timestamp)
    data: dict[str, Any]


class RecentDeadLetters:
    """The dead letters of the last `window_seconds`, at most `limit` of them, newest last."""

    def __init__(self, window_seconds: float = 3600, limit: int = 500) -> None:
        self.window_seconds = window_seconds
        self._items: deque[RecentDeadLetter] = deque(maxlen=limit)

    def add(self, received_at: float, data: dict[str, Any]) -> None:
        value = data.get("value") or data.get("value_base64")
        summary = {k: v for k, v in data.items() if k not in {"value", "value_base64", "headers"}}
        if isinstance(value, str):
            # The console shows the start of it; the full record stays on the topic.
            summary["value_preview"] = value[:300]
        self._items.append(RecentDeadLetter(received_at, summary))

    def recent(self, now: float | None = None) -> list[RecentDeadLetter]:
        since = (now if now is not None else time.time()) - self.window_seconds
        return [item for item in self._items if item.received_at >= since]


class SnapshotReads(Protocol):
    async def snapshot_document(self, campaign_id: str) -> dict[str, Any] | None: ...

    async def snapshot_revision(self, campaign_id: str) -> int | None: ...


class SnapshotReader:
    """The current snapshot of a campaign, for GET snapshot and a stream's first message.

    With the cache on, each read is validated against MongoDB by a revision-only query, and
    every read of a campaign that arrives while one query runs joins the next one (a query
    already running may predate a revision the caller has seen elsewhere, so it is not
    joined). Many viewers of one campaign cost one small query at a time; the snapshot body
    comes from memory when the cached revision is current. `cache_seconds` > 0 also answers
    without MongoDB while the cached entry is that recent (it may then trail the topic by up
    to that long). With `cache_entries` 0 every read fetches the whole stored snapshot.
    """

    def __init__(self, feed: SnapshotFeed, reads: SnapshotReads) -> None:
        self.feed = feed
        self.reads = reads
        self._next: dict[str, asyncio.Future[Snapshot | None]] = {}
        self._running: dict[str, asyncio.Task[None]] = {}

    async def current(self, campaign_id: str) -> Snapshot | None:
        if self.feed.cache_entries == 0:
            return await self._stored(campaign_id)
        if self.feed.cache_seconds > 0 and (hit := self.feed.fresh(campaign_id)) is not None:
            return hit
        future = self._next.get(campaign_id)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._next[campaign_id] = future
            if campaign_id not in self._running:
                self._running[campaign_id] = asyncio.create_task(self._checks(campaign_id))
        return await asyncio.shield(future)

    async def _checks(self, campaign_id: str) -> None:
        try:
            while (future := self._next.pop(campaign_id, None)) is not None:
                try:
                    future.set_result(await self._validated(campaign_id))
                except Exception as error:  # every waiter gets it, as a direct read would
                    future.set_exception(error)
        finally:
            del self._running[campaign_id]

    async def _validated(self, campaign_id: str) -> Snapshot | None:
        cached = self.feed.cached(campaign_id)
        if cached is not None:
            revision = await self.reads.snapshot_revision(campaign_id)
            if revision is None:
                self.feed.forget(campaign_id)
                return None
            if cached.revision >= revision:
                telemetry.SNAPSHOT_CACHE.labels("hit").inc()
                return self.feed.remember(cached)
        telemetry.SNAPSHOT_CACHE.labels("miss").inc()
        return await self._stored(campaign_id)

    async def _stored(self, campaign_id: str) -> Snapshot | None:
        doc = await self.reads.snapshot_document(campaign_id)
        if doc is None:
            self.feed.forget(campaign_id)
            return None
        snapshot = Snapshot.of(doc["snapshot"], dumps(doc["snapshot"]))
        return self.feed.remember(snapshot) if self.feed.cache_entries else snapshot
