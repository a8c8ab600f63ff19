"""`artifact.generated` through real Kafka into real MongoDB, and snapshots out."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient

from service.app.store import StoreUnavailable
from tests import events
from tests.events import cloud_event
from tests.integration.harness import Ledger, eventually, isolated_settings, new_id, running_ledger


def generated(campaign: str, artifact: str, n: int, **extra: Any) -> dict[str, Any]:
    """Take `n` of an artifact, its version id left to the ledger to derive."""
    content = {"headline": f"Spring is here, take {n}", "body": "x" * n}
    return events.generated(campaign, artifact, content=content, **extra)


async def test_same_event_three_times_is_one_version_and_one_revision(ledger: Ledger) -> None:
    campaign = new_id("c")
    event = generated(campaign, new_id("a"), 1)
    for _ in range(3):
        await ledger.send(event)
    marker = generated(campaign, new_id("a"), 2)  # a later event, to know the first is done
    await ledger.send(marker)
    await ledger.wait_revision(campaign, 2)
    await asyncio.sleep(0.5)  # room for a wrongly published third revision to show up
    assert [s["revision"] for s in await ledger.snapshots(campaign)] == [1, 2]
    assert await ledger.count("versions", {"campaign_id": campaign}) == 2
    # A version is the processed mark of the event that made it: no mark document beside it.
    assert await ledger.count("processed_events", {"campaign_id": campaign}) == 0


async def test_five_regenerations_are_numbered_one_to_five(ledger: Ledger) -> None:
    campaign, artifact = new_id("c"), new_id("a")
    for n in range(1, 6):
        await ledger.send(generated(campaign, artifact, n, version_id=f"{artifact}.v{n}"))
    last = await ledger.wait_revision(campaign, 5)
    numbers = [
        (d["_id"], d["version_number"])
        async for d in ledger.db.versions.find(
            {"artifact_id": artifact}, sort=[("version_number", 1)]
        )
    ]
    assert numbers == [(f"{artifact}.v{n}", n) for n in range(1, 6)]
    assert last["artifacts"][0]["version_count"] == 5
    assert last["artifacts"][0]["active_version"]["version_id"] == f"{artifact}.v5"
    stored = await ledger.db.versions.find_one({"_id": f"{artifact}.v3"})
    assert stored is not None
    assert stored["content"] == {"headline": "Spring is here, take 3", "body": "xxx"}


async def test_two_interleaved_campaigns_keep_separate_revisions(ledger: Ledger) -> None:
    first, second = new_id("c"), new_id("c")
    for n in range(1, 5):
        await ledger.send(generated(first, f"{first}.a", n))
        await ledger.send(generated(second, f"{second}.a", n))
        await ledger.send(generated(second, f"{second}.b", n))
    await ledger.wait_revision(first, 4)
    await ledger.wait_revision(second, 8)
    assert [s["revision"] for s in await ledger.snapshots(first)] == [1, 2, 3, 4]
    assert [s["revision"] for s in await ledger.snapshots(second)] == list(range(1, 9))
    readers = await ledger.reader("snapshot")
    assert set(readers.keys) == {first.encode(), second.encode()}
    assert all(h.get("content-type") == b"application/cloudevents+json" for h in readers.headers)


async def test_http_snapshot_equals_last_published(ledger: Ledger) -> None:
    campaign = new_id("c")
    await ledger.send(
        cloud_event("campaign.created", {"campaign_id": campaign, "name": "Spring launch"})
    )
    for n in range(1, 4):
        await ledger.send(generated(campaign, f"{campaign}.copy", n))
    published = await ledger.wait_revision(campaign, 4)
    response = await ledger.snapshot(campaign)
    assert response.status_code == 200
    assert response.json() == published
    assert response.headers["etag"] == '"4"'
    assert published["name"] == "Spring launch"
    assert (await ledger.snapshot("no-such-campaign")).status_code == 404
    health = await ledger.http.get("/readyz")
    assert health.status_code == 200, health.text
    assert (await ledger.http.get("/healthz")).json() == {"status": "ok"}


class FlakyStore:
    """The consumer's view of MongoDB during an outage: its first transactions fail."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.failed = 0

    def __call__(self, service: Any, name: str) -> None:
        real = service.processor.store
        flaky = self

        class Failing:
            def __getattr__(self, attribute: str) -> Any:
                return getattr(real, attribute)

            async def in_transaction(self, work: Any, **options: Any) -> Any:
                if flaky.failed < flaky.failures:
                    flaky.failed += 1
                    raise StoreUnavailable("injected: MongoDB is unreachable")
                return await real.in_transaction(work, **options)

        service.processor.store = Failing()


async def test_offset_not_committed_while_mongodb_fails(
    kafka_bootstrap: str, mongodb_uri: str
) -> None:
    settings = isolated_settings(kafka_bootstrap, mongodb_uri)
    flaky = FlakyStore(failures=4)
    async with running_ledger(settings, store=flaky) as ledger:
        campaign = new_id("c")
        await ledger.send(generated(campaign, new_id("a"), 1))
        await eventually(lambda: _at_least(flaky, 2), timeout=30)
        # While the store fails, nothing is stored and nothing is committed.
        assert await ledger.count("versions", {"campaign_id": campaign}) == 0
        assert await _committed(settings, ledger.topic("artifact")) == 0
        # After recovery the event is processed and only then committed.
        await ledger.wait_revision(campaign, 1, timeout=60)
        assert await ledger.count("versions", {"campaign_id": campaign}) == 1
        assert await eventually(lambda: _committed(settings, ledger.topic("artifact"))) == 1
        assert flaky.failed == 4


async def _at_least(flaky: FlakyStore, n: int) -> bool:
    return flaky.failed >= n


async def _committed(settings: Any, topic: str) -> int:
    """Sum of the group's committed offsets over the topic's partitions."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(settings.kafka_group_id)
        return sum(meta.offset for tp, meta in offsets.items() if tp.topic == topic)
    finally:
        await admin.close()
