"""The watchdog's rule, readiness's budget and the management port split, without servers."""

from __future__ import annotations

import asyncio
import time

import httpx
from fastapi import FastAPI

from service.api.management import PortSplit
from service.app.health import Health, Watchdog


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_watchdog_fires_only_with_work_waiting_and_no_progress() -> None:
    clock = FakeClock()
    dog = Watchdog(stall_seconds=60, clock=clock)
    dog.observe(assigned=0, lag=0)
    clock.now += 600
    assert not dog.stalled()  # nothing assigned: an idle spare consumer is healthy

    dog.observe(assigned=3, lag=0)
    clock.now += 600
    dog.observe(assigned=3, lag=0)
    assert not dog.stalled()  # caught up: idle is progress

    dog.observe(assigned=3, lag=50)
    clock.now += 59
    assert not dog.stalled()
    clock.now += 2
    assert dog.stalled()  # lag and 61 s without a commit

    dog.progressed()
    assert not dog.stalled()


def test_watchdog_sees_a_batch_that_never_finishes() -> None:
    clock = FakeClock()
    dog = Watchdog(stall_seconds=60, clock=clock)
    dog.observe(assigned=3, lag=0)
    dog.busy()  # all records fetched into one batch, which hangs
    clock.now += 61
    dog.observe(assigned=3, lag=0)
    assert dog.stalled()


async def test_readiness_runs_checks_concurrently_within_its_budget() -> None:
    async def slow() -> bool:
        await asyncio.sleep(30)
        return True

    async def fine() -> bool:
        return True

    health = Health({"mongodb": slow, "kafka": slow, "other": fine}, timeout=0.3)
    health.started = True
    began = time.monotonic()
    ready, checks = await health.ready()
    elapsed = time.monotonic() - began
    assert not ready
    assert checks == {"consuming": True, "mongodb": False, "kafka": False, "other": True}
    assert elapsed < 0.6, elapsed  # one budget, not one per check


async def test_readiness_caches_its_answer_but_never_the_stop() -> None:
    calls = 0

    async def counted() -> bool:
        nonlocal calls
        calls += 1
        return True

    health = Health({"mongodb": counted}, cache_seconds=60)
    health.started = True
    assert (await health.ready())[0]
    assert (await health.ready())[0]
    assert calls == 1
    health.stopping = True
    ready, checks = await health.ready()
    assert not ready
    assert checks["consuming"] is False


async def test_port_split_serves_probes_only_on_the_management_port() -> None:
    app = FastAPI()

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/campaigns")
    async def campaigns() -> list[str]:
        return []

    app.add_middleware(PortSplit, management_port=9090)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport) as client:
        assert (await client.get("http://pod:9090/healthz")).status_code == 200
        assert (await client.get("http://pod:9090/campaigns")).status_code == 404
        assert (await client.get("http://pod:8080/campaigns")).status_code == 200
        assert (await client.get("http://pod:8080/healthz")).status_code == 404
