"""Every event type and guarantee of the contract, through real Kafka and MongoDB."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from service.adapters import mongo_schema as cols
from tests.events import audited, cloud_event, generated, lifecycle
from tests.integration.harness import Ledger, eventually, isolated_settings, new_id, running_ledger


async def orphans(ledger: Ledger) -> int:
    """Audit reports and iteration logs whose version is not stored."""
    total = 0
    for collection in (cols.AUDIT_REPORTS, cols.ITERATION_LOGS):
        pipeline = [
            {
                "$lookup": {
                    "from": cols.VERSIONS,
                    "localField": "version_id",
                    "foreignField": "_id",
                    "as": "v",
                }
            },
            {"$match": {"v": {"$size": 0}}},
            {"$count": "n"},
        ]
        found = await (await ledger.db[collection].aggregate(pipeline)).to_list()
        total += found[0]["n"] if found else 0
    return total


async def test_audit_before_its_version_is_held_then_attached_without_orphans(
    ledger: Ledger,
) -> None:
    campaign, artifact = new_id("c"), new_id("a")
    versions = [f"{artifact}.v{n}" for n in range(1, 21)]
    # every audit races ahead of its version
    for version in versions:
        await ledger.send(audited(campaign, version, "pass"))
    await eventually(lambda: _count(ledger, "held_events", 20))
    assert await ledger.count("audit_reports") == 0
    assert await ledger.snapshots(campaign) == []  # holding changes no snapshot

    watching = True
    seen_orphans: list[int] = []

    async def watch() -> None:
        while watching:
            seen_orphans.append(await orphans(ledger))
            await asyncio.sleep(0.02)

    watcher = asyncio.create_task(watch())
    for version in versions:
        await ledger.send(generated(campaign, artifact, version))
    final = await ledger.wait_revision(campaign, 40)
    watching = False
    await watcher
    assert max(seen_orphans) == 0 and len(seen_orphans) > 3
    assert await ledger.count("audit_reports", {"campaign_id": campaign}) == 20
    assert await ledger.count("held_events") == 0
    assert final["artifacts"][0]["active_version"]["audit_state"] == "passed"
    # the version came first, then its audit, as if they had arrived in that order
    published = [s["counts"] for s in await ledger.snapshots(campaign)]
    assert published[0] == {**published[0], "versions": 1, "audit_reports": 0}
    assert published[1] == {**published[1], "versions": 1, "audit_reports": 1}


async def test_held_too_long_goes_to_dead_letter(kafka_bootstrap: str, mongodb_uri: str) -> None:
    settings = isolated_settings(kafka_bootstrap, mongodb_uri, audit_hold_seconds=1.0)
    async with running_ledger(settings) as ledger:
        campaign = new_id("c")
        await ledger.send(audited(campaign, "never-generated", "pass"))
        letters = await eventually(ledger.dead_letters, timeout=30)
        assert letters[0]["reason"] == "held_too_long"
        assert "never-generated" in letters[0]["detail"]
        assert orjson.loads(letters[0]["value"])["data"]["version_id"] == "never-generated"
        assert letters[0]["topic"] == ledger.topic("audit")
        assert await eventually(lambda: _count(ledger, "held_events", 0))
        assert await ledger.count("audit_reports") == 0


async def test_audit_error_then_retry_keeps_both_attempts(ledger: Ledger) -> None:
    campaign, artifact = new_id("c"), new_id("a")
    version = f"{artifact}.v1"
    await ledger.send(generated(campaign, artifact, version))
    await ledger.send(audited(campaign, version, "error", error="scorer timed out"))
    snap = await ledger.wait_revision(campaign, 2)
    assert snap["artifacts"][0]["active_version"]["audit_state"] == "unaudited"
    await ledger.send(
        audited(campaign, version, "pass", category_scores={"brand_voice": {"score": 91}})
    )
    snap = await ledger.wait_revision(campaign, 3)
    assert snap["artifacts"][0]["active_version"]["audit_state"] == "passed"
    lineage = (await ledger.http.get(f"/versions/{version}/audits")).json()
    assert [(a["attempt"], a["outcome"]) for a in lineage["items"]] == [(1, "error"), (2, "pass")]
    assert lineage["items"][0]["error"] == "scorer timed out"
    assert lineage["items"][1]["category_scores"] == {"brand_voice": {"score": 91.0}}
    assert (await ledger.http.get("/versions/nope/audits")).status_code == 404


async def test_feedback_links_old_version_feedback_and_new_version(ledger: Ledger) -> None:
    campaign, artifact = new_id("c"), new_id("a")
    await ledger.send(generated(campaign, artifact, f"{artifact}.v1"))
    feedback = cloud_event(
        "campaign.feedback.submitted",
        {
            "campaign_id": campaign,
            "artifact_id": artifact,
            "version_id": f"{artifact}.v1",
            "feedback_text": "Warmer tone, shorter headline",
            "tags": ["tone"],
            "submitted_by": "reviewer-7",
        },
    )
    await ledger.send(feedback)
    await ledger.send(
        generated(
            campaign,
            artifact,
            f"{artifact}.v2",
            parent_version_id=f"{artifact}.v1",
            feedback_id=feedback["id"],
        )
    )
    snap = await ledger.wait_revision(campaign, 3)
    assert snap["counts"]["iteration_logs"] == 1
    body = (await ledger.http.get(f"/campaigns/{campaign}/iterations")).json()
    [log] = body["items"]
    assert log["version_id"] == f"{artifact}.v1"
    assert log["feedback_text"] == "Warmer tone, shorter headline"
    assert log["feedback_number"] == 1
    assert log["resulting_versions"] == [{"version_id": f"{artifact}.v2", "version_number": 2}]
    assert body["next"] is None


async def test_lifecycle_runs_approval_and_archive(ledger: Ledger) -> None:
    campaign, artifact = new_id("c"), new_id("a")
    run = new_id("r")
    await ledger.send(lifecycle("campaign.created", campaign, name="Launch", brief={"goal": "x"}))
    await ledger.send(lifecycle("campaign.status-changed", campaign, status="generating"))
    await ledger.send(
        lifecycle("campaign.run.started", campaign, run_id=run, execution_mode="parallel")
    )
    await ledger.wait_revision(campaign, 3)
    for n in (1, 2, 3):
        await ledger.send(generated(campaign, artifact, f"{artifact}.v{n}", run_id=run))
    await ledger.wait_revision(campaign, 6)
    await ledger.send(lifecycle("campaign.run.completed", campaign, run_id=run, status="completed"))
    await ledger.send(lifecycle("campaign.version.approved", campaign, version_id=f"{artifact}.v3"))
    snap = await ledger.wait_revision(campaign, 8)
    assert snap["status"] == "generating"
    assert snap["runs"][0] | {"started_at": None, "completed_at": None} == {
        "run_id": run,
        "status": "completed",
        "execution_mode": "parallel",
        "started_at": None,
        "completed_at": None,
        "version_count": 3,
    }
    assert snap["artifacts"][0]["active_version"]["approved"] is True
    run_doc = await ledger.db.orchestration_runs.find_one({"_id": run})
    assert run_doc is not None and run_doc["status"] == "completed"
    assert await ledger.count("versions", {"run_id": run}) == 3

    # archive the active version: the next highest unarchived one becomes active
    await ledger.send(
        lifecycle("campaign.version.archive-requested", campaign, version_id=f"{artifact}.v3")
    )
    snap = await ledger.wait_revision(campaign, 9)
    assert snap["artifacts"][0]["active_version"]["version_id"] == f"{artifact}.v2"
    await ledger.send(
        lifecycle("campaign.version.archive-requested", campaign, version_id=f"{artifact}.v2")
    )
    await ledger.send(
        lifecycle("campaign.version.archive-requested", campaign, version_id=f"{artifact}.v1")
    )
    snap = await ledger.wait_revision(campaign, 11)
    assert snap["artifacts"][0]["active_version"] is None
    # history and audits stay readable
    page = (await ledger.http.get(f"/campaigns/{campaign}/artifacts/{artifact}/versions")).json()
    assert [(v["version_number"], v["archived"]) for v in page["items"]] == [
        (1, True),
        (2, True),
        (3, True),
    ]
    assert page["items"][2]["approved"] is True
    # a duplicate archive and a repeated approval change nothing
    await ledger.send(
        lifecycle("campaign.version.archive-requested", campaign, version_id=f"{artifact}.v1")
    )
    await ledger.send(lifecycle("campaign.version.approved", campaign, version_id=f"{artifact}.v3"))
    await ledger.send(lifecycle("campaign.status-changed", campaign, status="completed"))
    snap = await ledger.wait_revision(campaign, 12)
    assert snap["revision"] == 12 and snap["status"] == "completed"


async def test_delete_restore_and_purge(kafka_bootstrap: str, mongodb_uri: str) -> None:
    settings = isolated_settings(kafka_bootstrap, mongodb_uri, campaign_retention_days=3 / 86400)
    async with running_ledger(settings) as ledger:
        campaign, artifact = new_id("c"), new_id("a")
        first = generated(campaign, artifact, f"{artifact}.v1")
        await ledger.send(first)
        await ledger.send(audited(campaign, f"{artifact}.v1", "fail"))
        await ledger.wait_revision(campaign, 2)
        await ledger.send(lifecycle("campaign.delete-requested", campaign))
        snap = await ledger.wait_revision(campaign, 3)
        assert snap["deleted"] is True
        assert (await ledger.snapshot(campaign)).status_code == 410
        listed = (await ledger.http.get("/campaigns")).json()["items"]
        assert campaign not in [c["campaign_id"] for c in listed]
        await ledger.send(lifecycle("campaign.restore-requested", campaign))
        await ledger.wait_revision(campaign, 4)
        restored = await ledger.snapshot(campaign)
        assert restored.status_code == 200
        assert restored.json()["counts"]["audit_reports"] == 1
        assert (await ledger.http.get(f"/versions/{artifact}.v1/audits")).json()["items"]

        # deleted again, and left past the retention: everything of it goes
        await ledger.send(lifecycle("campaign.delete-requested", campaign))
        await ledger.wait_revision(campaign, 5)

        async def purged() -> bool:
            counts = [
                await ledger.count(c, {"campaign_id": campaign})
                for c in ("versions", "audit_reports", "artifacts")
            ]
            return sum(counts) == 0 and await ledger.count("campaigns", {"_id": campaign}) == 0

        assert await eventually(purged, timeout=30)
        assert (await ledger.snapshot(campaign)).status_code == 404
        # an old event delivered again stays a duplicate: its mark outlives the purge (the
        # version that was its mark is gone)
        await ledger.send(first)
        # a campaign that comes again under the same id never reuses a revision number
        await ledger.send(generated(campaign, f"{artifact}.again", f"{artifact}.again.v1"))
        again = await ledger.wait_revision(campaign, 6)
        assert again["revision"] == 6 and again["counts"]["versions"] == 1
        assert [a["artifact_id"] for a in again["artifacts"]] == [f"{artifact}.again"]
        assert (await ledger.snapshot(campaign)).json() == again


async def test_version_history_of_1200_pages_to_the_end(ledger: Ledger) -> None:
    campaign, artifact = new_id("c"), new_id("a")
    sends = [
        await ledger.producer.send(
            ledger.topic("artifact"),
            orjson.dumps(generated(campaign, artifact, f"{artifact}.v{n}")),
            key=campaign.encode(),
        )
        for n in range(1, 1201)
    ]
    await asyncio.gather(*sends)
    await ledger.wait_revision(campaign, 1200, timeout=120)
    numbers: list[int] = []
    after = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 500}
        if after:
            params["after"] = after
        page = (
            await ledger.http.get(
                f"/campaigns/{campaign}/artifacts/{artifact}/versions", params=params
            )
        ).json()
        numbers += [v["version_number"] for v in page["items"]]
        pages += 1
        after = page["next"]
        if after is None:
            break
    assert numbers == list(range(1, 1201))
    assert pages == 3
    bad = await ledger.http.get(
        f"/campaigns/{campaign}/artifacts/{artifact}/versions", params={"limit": 501}
    )
    assert bad.status_code == 422


async def test_metrics_export_and_openapi(ledger: Ledger) -> None:
    campaign = new_id("c")
    for artifact, outcomes in (("copy", ["pass"]), ("social", ["fail", "conditional"])):
        artifact_id = f"{campaign}.{artifact}"
        for n, outcome in enumerate(outcomes, start=1):
            version = f"{artifact_id}.v{n}"
            await ledger.send(generated(campaign, artifact_id, version))
            await ledger.send(audited(campaign, version, outcome))
    await ledger.wait_revision(campaign, 6)
    metrics = (await ledger.http.get(f"/campaigns/{campaign}/metrics")).json()
    assert metrics["versions_per_artifact"] == {f"{campaign}.copy": 1, f"{campaign}.social": 2}
    assert metrics["audit_reports"] == 3
    assert metrics["audit_pass_rate"] == 1 / 3
    export = (await ledger.http.get(f"/campaigns/{campaign}/export")).json()
    assert export["campaign_id"] == campaign
    assert len(export["versions"]) == 3 and len(export["audit_reports"]) == 3
    assert len(export["artifacts"]) == 2 and len(export["campaigns"]) == 1
    assert export["iteration_logs"] == [] and export["orchestration_runs"] == []
    spec = (await ledger.http.get("/openapi.json")).json()
    assert "/campaigns/{campaign_id}/snapshot" in spec["paths"]
    asyncapi = (await ledger.http.get("/asyncapi.json")).json()
    assert asyncapi["asyncapi"].startswith("3.")
    prometheus = (await ledger.http.get("/metrics")).text
    assert "ledger_events_total" in prometheus


async def test_api_tokens_guard_every_route_but_health(
    kafka_bootstrap: str, mongodb_uri: str
) -> None:
    settings = isolated_settings(kafka_bootstrap, mongodb_uri, api_tokens="alpha, beta")
    async with running_ledger(settings) as ledger:
        campaign = new_id("c")
        await ledger.send(generated(campaign, new_id("a"), new_id("v")))
        await ledger.wait_revision(campaign, 1)
        for path in (f"/campaigns/{campaign}/snapshot", "/openapi.json", "/asyncapi.json"):
            assert (await ledger.http.get(path)).status_code == 401
            wrong = {"Authorization": "Bearer gamma"}
            assert (await ledger.http.get(path, headers=wrong)).status_code == 401
            good = {"Authorization": "Bearer beta"}
            assert (await ledger.http.get(path, headers=good)).status_code == 200
        for path in ("/healthz", "/readyz", "/metrics"):
            assert (await ledger.http.get(path)).status_code == 200


async def test_indexes_and_validators_exist(ledger: Ledger) -> None:
    info = await ledger.db.versions.index_information()
    keys = {tuple(k for k, _ in spec["key"]) for spec in info.values()}
    assert ("campaign_id", "artifact_id", "version_number") in keys
    assert ("artifact_id", "version_number") not in keys  # retired: every insert paid for it
    options = {
        c["name"]: c["options"] for c in await (await ledger.db.list_collections()).to_list()
    }
    for name in cols.ENTITY_COLLECTIONS:
        assert "$jsonSchema" in options[name]["validator"], name
    cursor = ledger.db.versions.find(
        {"campaign_id": "c", "artifact_id": "x", "version_number": {"$gt": 5}}
    )
    plan = await cursor.sort("version_number", 1).limit(50).explain()
    assert "COLLSCAN" not in str(plan)


async def _count(ledger: Ledger, collection: str, expected: int) -> bool:
    return await ledger.count(collection) == expected
