"""Health that tells the truth, against real Kafka and MongoDB.

- The lag metric (`ledger_consumer_lag{topic,partition}`) shows records waiting while the
  consumer is stalled (a hung batch, or MongoDB failing every batch), and goes back to 0 once
  it consumes them.
- The progress watchdog fails liveness (/healthz 503, `ledger_consumer_stalled` 1) when the
  consumer holds partitions with lag and commits nothing for WATCHDOG_STALL_SECONDS, and
  recovers when it moves again.
- Readiness answers within READINESS_TIMEOUT_SECONDS although MongoDB does not answer at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.app.store import StoreUnavailable
from service.bootstrap import Service, build
from tests.integration.harness import Ledger, eventually, isolated_settings, running_ledger


async def metric(ledger: Ledger, name: str, **labels: str) -> list[float]:
    """The values of `name` in GET /metrics whose labels include `labels`."""
    text = (await ledger.http.get("/metrics")).text
    return [
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    ]


def held_processor(release: asyncio.Event, mode: str) -> Any:
    """Replaces the processor's `process` until `release`: "hung" waits (a batch taken and
    never finished, as with a hung MongoDB call); "unavailable" fails as a MongoDB outage
    does (the batch is rewound and retried with growing pauses)."""

    def wrap(service: Service, _name: str) -> None:
        original = service.processor.process

        async def process(records: Any, **options: Any) -> Any:
            if mode == "hung":
                await release.wait()
            elif not release.is_set():
                raise StoreUnavailable("MongoDB is away (test)")
            return await original(records, **options)

        service.processor.process = process  # type: ignore[method-assign]

    return wrap


@pytest.mark.parametrize("mode", ["hung", "unavailable"])
async def test_lag_metric_and_watchdog_follow_a_stalled_consumer(
    kafka_bootstrap: str, mongodb_uri: str, mode: str
) -> None:
    settings = isolated_settings(
        kafka_bootstrap,
        mongodb_uri,
        consumer_lag_interval_seconds=0.2,
        watchdog_stall_seconds=2.0,
    )
    release = asyncio.Event()
    async with running_ledger(settings, processor=held_processor(release, mode)) as ledger:
        topic = ledger.topic("artifact")
        # Bad values are fine: each is still consumed (as a dead letter) and committed.
        await ledger.send_raw("artifact", b"first", key=b"k")
        await asyncio.sleep(1)  # the consumer takes it and is stuck with it
        for n in range(5):
            await ledger.send_raw("artifact", f"next {n}".encode(), key=b"k")

        async def lag_shown() -> float:
            return sum(await metric(ledger, "ledger_consumer_lag", topic=topic))

        assert await eventually(lag_shown, timeout=20) > 0
        assert (await ledger.http.get("/healthz")).status_code == 200  # not for 2 s yet

        async def stalled() -> httpx.Response | None:
            answer = await ledger.http.get("/healthz")
            return answer if answer.status_code == 503 else None

        answer = await eventually(stalled, timeout=20)
        assert answer.json()["status"] == "stalled"
        assert answer.json()["watchdog"]["assigned_partitions"] > 0
        assert await metric(ledger, "ledger_consumer_stalled") == [1.0]

        release.set()

        async def caught_up() -> bool:
            lags = await metric(ledger, "ledger_consumer_lag", topic=topic)
            alive = (await ledger.http.get("/healthz")).status_code == 200
            return bool(lags) and sum(lags) == 0 and alive

        await eventually(caught_up, timeout=30)
        assert await metric(ledger, "ledger_consumer_stalled") == [0.0]
        assert len(await eventually(lambda: _dead_letters(ledger, 6), timeout=30)) == 6


async def _dead_letters(ledger: Ledger, count: int) -> list[dict[str, Any]] | None:
    found = await ledger.dead_letters()
    return found if len(found) >= count else None


@contextlib.contextmanager
def silent_server() -> Iterator[str]:
    """A TCP port that accepts connections and never says a word (a hung server)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield f"127.0.0.1:{sock.getsockname()[1]}"


async def test_readiness_answers_within_its_budget_when_mongodb_hangs(
    kafka_bootstrap: str,
) -> None:
    with silent_server() as hung:
        settings = isolated_settings(
            kafka_bootstrap,
            f"mongodb://{hung}/?directConnection=true",
            readiness_timeout_seconds=0.5,
            readiness_cache_seconds=0,
        )
        service = build(settings)
        service.health.started = True
        try:
            transport = httpx.ASGITransport(app=service.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://ledger") as client:
                began = time.monotonic()
                answer = await client.get("/readyz")
                elapsed = time.monotonic() - began
        finally:
            await service.store.close()
    assert answer.status_code == 503
    assert answer.json()["checks"]["mongodb"] is False
    # MongoDB's own server selection would take 5 s; the probe's budget is 0.5 s.
    assert elapsed < 1.5, elapsed
