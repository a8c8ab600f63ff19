"""Live snapshots over Server-Sent Events, against two running instances of the service.

Both instances share topics, consumer group and database, so each campaign's events are
processed by one of them; a stream on either must carry every published revision.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from service.settings import Settings
from tests.events import audited, generated, lifecycle
from tests.integration.harness import Ledger, isolated_settings, new_id, running_ledger
from tests.integration.served import http_server, sse

TOKEN = "stream-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@contextlib.asynccontextmanager
async def two_instances(
    kafka_bootstrap: str, mongodb_uri: str, **second: Any
) -> AsyncIterator[tuple[Ledger, Ledger, str, str]]:
    first_settings = isolated_settings(kafka_bootstrap, mongodb_uri, api_tokens=TOKEN)
    second_settings = Settings(**{**first_settings.model_dump(), **second})
    async with (
        running_ledger(first_settings) as a,
        running_ledger(second_settings) as b,
        http_server(a.service) as url_a,
        http_server(b.service) as url_b,
    ):
        yield a, b, url_a, url_b


async def test_a_stream_on_either_instance_carries_every_published_revision(
    kafka_bootstrap: str, mongodb_uri: str
) -> None:
    async with (
        two_instances(kafka_bootstrap, mongodb_uri) as (a, _b, url_a, url_b),
        httpx.AsyncClient(timeout=30, headers=AUTH) as http,
    ):
        campaign, artifact = new_id("c"), new_id("a")
        for url in (url_a, url_b):
            unknown = await http.get(f"{url}/campaigns/{campaign}/stream")
            assert unknown.status_code == 404, unknown.text
            refused = await http.get(
                f"{url}/campaigns/{campaign}/stream", headers={"Authorization": "Bearer wrong"}
            )
            assert refused.status_code == 401
            assert (
                await http.get(f"{url}/stream", headers={"Authorization": "Bearer x"})
            ).status_code == 401
            recent = f"{url}/dead-letters/recent"
            assert (await http.get(recent, headers={"Authorization": ""})).status_code == 401
            assert (await http.get(recent)).json() == {"items": []}

        await a.send(generated(campaign, artifact, f"{artifact}.v1"))
        first = await a.wait_revision(campaign, 1)
        async with (
            sse(http, f"{url_a}/campaigns/{campaign}/stream") as on_a,
            sse(http, f"{url_b}/campaigns/{campaign}/stream") as on_b,
            sse(http, f"{url_b}/stream") as everything,
        ):
            for stream in (on_a, on_b):
                (initial,) = await stream.wait_for(1)
                assert (initial.event, initial.id, initial.data) == ("snapshot", "1", first)
            await a.send(audited(campaign, f"{artifact}.v1", "fail"))
            await a.send(generated(campaign, artifact, f"{artifact}.v2"))
            await a.send(audited(campaign, f"{artifact}.v2", "pass"))
            published = await a.wait_revision(campaign, 4)
            for stream in (on_a, on_b):
                got = await stream.wait_for(4)
                assert [m.id for m in got] == ["1", "2", "3", "4"]
                assert got[-1].data == published
                assert all(m.event == "snapshot" for m in got)
            # the all-campaigns stream has no backlog: only what was published after it opened
            seen = await everything.wait_for(3)
            assert [m.id for m in seen[-3:]] == [f"{campaign}:{n}" for n in (2, 3, 4)]

            # the HTTP snapshot of an instance is never older than what its stream sent
            for url, stream in ((url_a, on_a), (url_b, on_b)):
                answer = await http.get(f"{url}/campaigns/{campaign}/snapshot")
                assert answer.json()["revision"] >= int(stream.messages[-1].id)
                etag = answer.headers["etag"]
                again = await http.get(
                    f"{url}/campaigns/{campaign}/snapshot", headers={"If-None-Match": etag}
                )
                assert again.status_code == 304 and again.headers["etag"] == etag
                other = await http.get(
                    f"{url}/campaigns/{campaign}/snapshot", headers={"If-None-Match": '"1"'}
                )
                assert other.status_code == 200 and other.json() == answer.json()

            await a.send(lifecycle("campaign.delete-requested", campaign))
            deleted = await a.wait_revision(campaign, 5)
            for stream in (on_a, on_b):
                last = (await stream.wait_for(5))[-1]
                assert (last.event, last.id, last.data) == ("deleted", "5", deleted)
            assert (await http.get(f"{url_b}/campaigns/{campaign}/snapshot")).status_code == 410


async def test_last_event_id_resumes_without_repeating(
    kafka_bootstrap: str, mongodb_uri: str
) -> None:
    async with (
        two_instances(kafka_bootstrap, mongodb_uri) as (a, _b, _url_a, url_b),
        httpx.AsyncClient(timeout=30, headers=AUTH) as http,
    ):
        campaign, artifact = new_id("c"), new_id("a")
        await a.send(generated(campaign, artifact, f"{artifact}.v1"))
        await a.send(audited(campaign, f"{artifact}.v1", "pass"))
        await a.wait_revision(campaign, 2)
        url = f"{url_b}/campaigns/{campaign}/stream"
        async with (
            sse(http, url, {"Last-Event-ID": "2"}) as caught_up,
            sse(http, url, {"Last-Event-ID": "1"}) as behind,
            sse(http, url, {"Last-Event-ID": "not-a-number"}) as fresh,
        ):
            assert [m.id for m in await behind.wait_for(1)] == ["2"]
            assert [m.id for m in await fresh.wait_for(1)] == ["2"]
            await asyncio.sleep(0.5)
            assert caught_up.messages == []  # nothing newer than what it had
            await a.send(generated(campaign, artifact, f"{artifact}.v2"))
            await a.wait_revision(campaign, 3)
            assert [m.id for m in await caught_up.wait_for(1)] == ["3"]
            assert [m.id for m in await behind.wait_for(2)] == ["2", "3"]


async def test_past_the_limit_503_with_retry_after_and_shutdown_ends_streams(
    kafka_bootstrap: str, mongodb_uri: str
) -> None:
    async with (
        two_instances(
            kafka_bootstrap, mongodb_uri, stream_max_clients=2, stream_keepalive_seconds=0.3
        ) as (a, b, _url_a, url_b),
        httpx.AsyncClient(timeout=30, headers=AUTH) as http,
    ):
        campaign, artifact = new_id("c"), new_id("a")
        await a.send(generated(campaign, artifact, f"{artifact}.v1"))
        await a.wait_revision(campaign, 1)
        url = f"{url_b}/campaigns/{campaign}/stream"
        async with sse(http, url) as one, sse(http, f"{url_b}/stream") as two:
            full = await http.get(url)
            assert full.status_code == 503
            assert int(full.headers["retry-after"]) > 0
            await asyncio.sleep(1.0)
            assert two.comments >= 2  # keep-alive comments while idle
            # SIGTERM's first step: both open streams end at once
            started = time.monotonic()
            b.service.begin_stop()
            await asyncio.wait_for(one.ended.wait(), 2)
            await asyncio.wait_for(two.ended.wait(), 2)
            assert time.monotonic() - started < 2
            assert (await http.get(url)).status_code == 503  # stopping: no new streams
        # the other instance is unaffected
        assert b.service.feed.open_streams == 0


@pytest.mark.parametrize("cache_entries", [0, 10_000])
async def test_cached_and_uncached_snapshot_reads_give_the_same_bytes(
    kafka_bootstrap: str, mongodb_uri: str, cache_entries: int
) -> None:
    settings = isolated_settings(kafka_bootstrap, mongodb_uri, snapshot_cache_entries=cache_entries)
    async with running_ledger(settings) as ledger:
        campaign, artifact = new_id("c"), new_id("a")
        await ledger.send(generated(campaign, artifact, f"{artifact}.v1"))
        published = await ledger.wait_revision(campaign, 1)
        answers = await asyncio.gather(*(ledger.snapshot(campaign) for _ in range(20)))
        assert {a.content for a in answers} == {answers[0].content}
        assert answers[0].json() == published
        await ledger.send(audited(campaign, f"{artifact}.v1", "pass"))
        newer = await ledger.wait_revision(campaign, 2)
        assert (await ledger.snapshot(campaign)).json() == newer
