"""`serve --role api|consumer`: the API joins no consumer group, the consumer consumes.

Both roles run in this event loop against real Kafka and MongoDB, with the same settings (as
the two Deployments of k8s/ do): an event sent while only the API runs stays unconsumed and no
group exists; once a consumer starts, the group exists and the API serves what it stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable

import httpx
import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from pymongo import AsyncMongoClient

from dev.servers.common import free_ports
from service.bootstrap import Role, Service, build
from service.settings import Settings
from tests.events import cloud_event
from tests.integration.harness import eventually, isolated_settings, new_id


@contextlib.asynccontextmanager
async def running(
    settings: Settings, role: Role
) -> AsyncIterator[tuple[Service, httpx.AsyncClient]]:
    service = build(settings, role)
    async with service.app.router.lifespan_context(service.app):
        transport = httpx.ASGITransport(app=service.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://pod") as client:
            yield service, client


async def groups(admin: AIOKafkaAdminClient) -> set[str]:
    return {group[0] for group in await admin.list_consumer_groups()}


async def test_api_role_joins_no_group_and_consumer_role_consumes(
    kafka_bootstrap: str, mongodb_uri: str
) -> None:
    settings = isolated_settings(kafka_bootstrap, mongodb_uri)
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await admin.start()
    await producer.start()
    try:
        # The topics exist beforehand, as on a cluster where the platform makes them.
        topics = [
            *settings.input_topics,
            settings.topic_snapshot_updated,
            settings.topic_dead_letter,
        ]
        await admin.create_topics([NewTopic(t, 3, 1) for t in topics])
        campaign = new_id("c")
        created = cloud_event("campaign.created", {"campaign_id": campaign, "name": "Roles"})

        async with running(settings, "api") as (_api, api):
            ready = await api.get("/readyz")
            assert ready.status_code == 200, ready.text
            assert ready.json()["checks"] == {"serving": True, "mongodb": True}
            await producer.send_and_wait(
                settings.topic_lifecycle, orjson.dumps(created), key=campaign.encode()
            )
            await asyncio.sleep(3)
            assert settings.kafka_group_id not in await groups(admin)
            assert (await api.get(f"/campaigns/{campaign}/snapshot")).status_code == 404

            async with running(settings, "consumer") as (_consumer, consumer):
                # The consumer stores it; the API, reading MongoDB, serves it.
                async def stored() -> bool:
                    answer = await api.get(f"/campaigns/{campaign}/snapshot")
                    return answer.status_code == 200

                await eventually(stored, timeout=60)
                assert settings.kafka_group_id in await groups(admin)
                # The consumer role serves probes and metrics, no API.
                assert (await consumer.get("/healthz")).status_code == 200
                assert (await consumer.get("/metrics")).status_code == 200
                assert (await consumer.get(f"/campaigns/{campaign}/snapshot")).status_code == 404
                ready = await consumer.get("/readyz")
                assert ready.json()["checks"] == {"consuming": True, "mongodb": True, "kafka": True}
    finally:
        await producer.stop()
        await admin.close()
        await drop_database(settings)


async def drop_database(settings: Settings) -> None:
    cleanup: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(
        settings.mongodb_uri.get_secret_value()
    )
    await cleanup.drop_database(settings.mongodb_database)
    await cleanup.close()


def role_env(settings: Settings, http_port: int, management_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "MONGODB_"))}
    for name, value in settings.model_dump().items():
        if value is not None:
            secret = getattr(value, "get_secret_value", None)
            env[name.upper()] = str(secret() if secret else value)
    env.update(
        HTTP_HOST="127.0.0.1",
        HTTP_PORT=str(http_port),
        MANAGEMENT_PORT=str(management_port),
        LOG_FORMAT="json",
    )
    return env


async def status(url: str) -> int | None:
    try:
        async with httpx.AsyncClient(timeout=2) as client:
            return (await client.get(url)).status_code
    except httpx.TransportError:
        return None


async def test_serve_roles_as_processes_with_a_management_port(
    kafka_bootstrap: str, mongodb_uri: str
) -> None:
    """`campaign-ledger serve --role consumer|api` as processes, as k8s/ runs them: probes and
    metrics on MANAGEMENT_PORT only, the API on HTTP_PORT only (consumers: none), and a
    SIGTERM that ends each well inside the shutdown budget, with status 0."""
    settings = isolated_settings(kafka_bootstrap, mongodb_uri)
    http_port, management_port = free_ports(2)
    management = f"http://127.0.0.1:{management_port}"
    api = f"http://127.0.0.1:{http_port}"
    budget = settings.http_shutdown_timeout_seconds + settings.kafka_shutdown_timeout_seconds
    # The consumer first: it creates the topics the API's live feed follows.
    for role in ("consumer", "api"):
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            *("-m", "service", "serve", "--role", role),
            env=role_env(settings, http_port, management_port),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            await eventually(lambda: _is(status(f"{management}/readyz"), 200), timeout=90)
            assert await status(f"{management}/metrics") == 200
            assert await status(f"{management}/campaigns") == 404
            if role == "consumer":
                assert await status(f"{api}/healthz") is None  # no API port at all
            else:
                assert await status(f"{api}/campaigns") == 200
                assert await status(f"{api}/healthz") == 404  # probes only on management
            began = time.monotonic()
            process.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(process.wait(), 60)
            stopped_in = time.monotonic() - began
            assert code == 0, (role, code)
            assert stopped_in < budget, (role, stopped_in)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    await drop_database(settings)


async def _is(answer: Awaitable[int | None], expected: int) -> bool:
    return await answer == expected
