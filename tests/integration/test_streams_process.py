"""SIGTERM on a real `campaign-ledger serve` process ends its open streams at once.

uvicorn waits for open responses before the lifespan shutdown; without the service ending
its streams first, a pod with a browser attached would hang for the whole grace period.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from tests.chaos.processes import Deployment, ServiceProcess
from tests.events import cloud_event
from tests.integration.harness import eventually, new_id
from tests.integration.served import sse


@pytest.fixture
async def service(
    kafka_bootstrap: str, mongodb_uri: str, tmp_path: Path
) -> AsyncIterator[tuple[Deployment, ServiceProcess]]:
    deployment = Deployment.isolated(kafka_bootstrap, mongodb_uri, label="streams")
    await deployment.create_topics()
    process = ServiceProcess(deployment, tmp_path)
    await process.start()
    try:
        yield deployment, process
    finally:
        await process.stop_now()
        await deployment.drop()


async def test_sigterm_closes_open_streams_promptly_and_exits_cleanly(
    service: tuple[Deployment, ServiceProcess],
) -> None:
    deployment, process = service
    campaign = new_id("c")
    producer = AIOKafkaProducer(bootstrap_servers=deployment.kafka, acks="all")
    await producer.start()
    try:
        created = cloud_event("campaign.created", {"campaign_id": campaign, "name": "Term"})
        await producer.send_and_wait(
            deployment.topic("lifecycle"), orjson.dumps(created), key=campaign.encode()
        )
    finally:
        await producer.stop()
    async with httpx.AsyncClient(base_url=process.base_url, timeout=30) as http:

        async def known() -> bool:
            return (await http.get(f"/campaigns/{campaign}/snapshot")).status_code == 200

        await eventually(known, timeout=60)
        async with (
            sse(http, f"/campaigns/{campaign}/stream") as one,
            sse(http, "/stream") as every,
        ):
            await one.wait_for(1)
            started = time.monotonic()
            await process.sigterm(wait=False)
            await asyncio.wait_for(one.ended.wait(), 5)
            await asyncio.wait_for(every.ended.wait(), 5)
            closed_after = time.monotonic() - started
        assert closed_after < 5, closed_after
    assert await process.wait_exit(30) == 0, process.log_tail()
