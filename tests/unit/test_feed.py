"""The snapshot feed: skip-to-latest per client, bounded memory, the cache only moves forward."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from service.adapters.kafka.follower import OutputTopicsFollower
from service.app.streams import (
    RecentDeadLetters,
    Snapshot,
    SnapshotFeed,
    SnapshotReader,
    StreamsFull,
)
from service.settings import Settings


def snap(campaign: str, revision: int, deleted: bool = False) -> Snapshot:
    return Snapshot.of(
        {
            "campaign_id": campaign,
            "revision": revision,
            "deleted": deleted,
            "counts": {"versions": revision, "audit_reports": 0},
        }
    )


def feed(**kw: Any) -> SnapshotFeed:
    options: dict[str, Any] = {"max_streams": 10, "cache_entries": 100, "cache_seconds": 0.0}
    return SnapshotFeed(**{**options, **kw})


async def test_a_slow_client_keeps_only_the_newest_revision_and_counts_the_skips() -> None:
    f = feed(backlog=1)
    slow = f.subscribe("c-1")
    fast = f.subscribe("c-1")
    for revision in range(1, 1001):
        f.published(snap("c-1", revision))
        if revision % 100 == 0:
            got = await fast.next(0.01)
            assert got is not None and got[-1].revision == revision
    assert sum(len(q) for q in slow.pending.values()) == 1  # never a queue
    taken = await slow.next(0.01)
    assert [s.revision for s in taken or []] == [1000]
    assert slow.skipped == 999
    assert fast.skipped == 1000 - 10  # it took one of every hundred


async def test_a_burst_within_the_backlog_arrives_whole_and_beyond_it_skips_the_oldest() -> None:
    f = feed(backlog=16)
    client = f.subscribe("c-1")
    for revision in range(1, 11):  # one batch's revisions, published together
        f.published(snap("c-1", revision))
    assert [s.revision for s in await client.next(0.01) or []] == list(range(1, 11))
    assert client.skipped == 0
    for revision in range(11, 111):  # a client that stopped reading
        f.published(snap("c-1", revision))
    assert [s.revision for s in await client.next(0.01) or []] == list(range(95, 111))
    assert client.skipped == 100 - 16


async def test_the_all_campaigns_stream_holds_one_entry_each_and_closes_past_the_cap() -> None:
    f = feed(max_pending=50)
    everything = f.subscribe(None)
    for revision in (1, 2, 3):
        for n in range(50):
            f.published(snap(f"c-{n}", revision))
    assert len(everything.pending) == 50 and not everything.closed
    assert all(len(q) == 3 for q in everything.pending.values())
    f.published(snap("c-new", 1))
    assert everything.closed and await everything.next(0.01) is None
    assert f.open_streams == 0


async def test_republished_older_revisions_are_not_handed_out_again() -> None:
    f = feed()
    sub = f.subscribe("c-1")
    for revision in (1, 2, 3, 2, 1, 3):
        f.published(snap("c-1", revision))
    taken = await sub.next(0.01)
    assert [s.revision for s in taken or []] == [1, 2, 3]
    assert f.cached("c-1") is not None and f.cached("c-1").revision == 3  # type: ignore[union-attr]


def test_the_cache_never_goes_back_and_stays_bounded() -> None:
    f = feed(cache_entries=3)
    f.published(snap("c-1", 5))
    assert f.remember(snap("c-1", 4)).revision == 5  # an older read does not replace it
    assert f.remember(snap("c-1", 6)).revision == 6
    f.published(snap("c-1", 6))  # published after being read: cache unchanged
    for n in range(2, 10):
        f.published(snap(f"c-{n}", 1))
    assert f.cached("c-1") is None and f.cached("c-9") is not None


def test_limit_and_stop_refuse_new_streams() -> None:
    f = feed(max_streams=2)
    first, _second = f.subscribe("a"), f.subscribe(None)
    with pytest.raises(StreamsFull):
        f.subscribe("b")
    first.close()
    f.subscribe("b")
    f.close()
    assert f.open_streams == 0
    with pytest.raises(StreamsFull):
        f.subscribe("c")


class CountingReads:
    def __init__(self, revision: int) -> None:
        self.revision = revision
        self.documents = 0
        self.revisions = 0

    async def snapshot_document(self, campaign_id: str) -> dict[str, Any] | None:
        self.documents += 1
        await asyncio.sleep(0.01)
        return {"snapshot": {"campaign_id": campaign_id, "revision": self.revision}}

    async def snapshot_revision(self, campaign_id: str) -> int | None:
        self.revisions += 1
        await asyncio.sleep(0.01)
        return self.revision


async def test_concurrent_reads_share_one_check_and_the_body_comes_from_memory() -> None:
    reads = CountingReads(revision=3)
    reader = SnapshotReader(feed(), reads)
    first = await reader.current("c-1")
    assert first is not None and reads.documents == 1
    answers = await asyncio.gather(*(reader.current("c-1") for _ in range(100)))
    assert {a.revision for a in answers if a} == {3}
    assert reads.documents == 1  # the cached body was current
    assert reads.revisions <= 2  # one check running, the rest joined the next one
    reads.revision = 4
    assert (await reader.current("c-1")).revision == 4  # type: ignore[union-attr]
    assert reads.documents == 2


async def test_without_a_cache_every_read_fetches_the_stored_snapshot() -> None:
    reads = CountingReads(revision=1)
    reader = SnapshotReader(feed(cache_entries=0), reads)
    await asyncio.gather(*(reader.current("c-1") for _ in range(5)))
    assert reads.documents == 5 and reads.revisions == 0


def test_recent_dead_letters_keep_the_last_hour_without_values() -> None:
    recent = RecentDeadLetters(window_seconds=3600, limit=3)
    recent.add(1000.0, {"reason": "old", "value": "x"})
    for n in range(3):
        recent.add(5000.0 + n, {"reason": f"r{n}", "value": "v" * 1000, "headers": []})
    items = recent.recent(now=5000.0 + 3600)
    assert [i.data["reason"] for i in items] == ["r0", "r1", "r2"]
    assert "value" not in items[0].data and len(items[0].data["value_preview"]) == 300


def test_the_follower_ignores_records_that_are_not_snapshots_it_published() -> None:
    f = feed()
    follower = OutputTopicsFollower(Settings.defaults(), f, RecentDeadLetters())
    for value in (None, b"", b"not json", b"[]", b'{"data": 1}', b'{"data": {"revision": 1}}'):
        follower._snapshot(value)
    assert f.cached("c-1") is None
    event = {"data": {"campaign_id": "c-1", "revision": 2, "deleted": False, "counts": {}}}
    follower._snapshot(orjson.dumps(event))
    cached = f.cached("c-1")
    assert cached is not None and cached.revision == 2
    assert orjson.loads(cached.body) == event["data"]
