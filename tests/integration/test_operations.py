"""The operations commands, run as the real CLI against real Kafka and MongoDB.

The service runs in-process (harness); `campaign-ledger` runs as a child process with the same
settings in its environment, as an operator would run it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from pymongo import AsyncMongoClient

from service.adapters.mongo_schema import CAMPAIGN_ENTITY_ONLY, ENTITY_COLLECTIONS, TOMBSTONES
from service.settings import Settings
from tests.events import audited, cloud_event, generated, lifecycle
from tests.integration.harness import Ledger, eventually, isolated_settings, new_id, running_ledger
from tests.integration.test_data_model import orphans

PROVENANCE = "campaign-ledger-replayed-from"


@dataclass
class Run:
    code: int
    stdout: bytes
    stderr: bytes

    def lines(self) -> list[dict[str, Any]]:
        return [orjson.loads(line) for line in self.stdout.splitlines() if line.strip()]

    def error(self) -> dict[str, Any]:
        """The structured error: the last line of stderr that is a JSON object."""
        for line in reversed(self.stderr.splitlines()):
            if line.startswith(b"{"):
                found: dict[str, Any] = orjson.loads(line)
                return found
        raise AssertionError(f"no structured error on stderr: {self.stderr!r}")


def command() -> list[str]:
    """The installed console script, as an operator runs it (else `python -m service`)."""
    script = shutil.which("campaign-ledger", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "service"]


def environment(settings: Settings, **overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "MONGODB_"))}
    env.update(
        {
            "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
            "MONGODB_URI": settings.mongodb_uri.get_secret_value(),
            "MONGODB_DATABASE": settings.mongodb_database,
            "TOPIC_ARTIFACT_GENERATED": settings.topic_artifact_generated,
            "TOPIC_AUDIT_COMPLETED": settings.topic_audit_completed,
            "TOPIC_FEEDBACK": settings.topic_feedback,
            "TOPIC_LIFECYCLE": settings.topic_lifecycle,
            "TOPIC_SNAPSHOT_UPDATED": settings.topic_snapshot_updated,
            "TOPIC_DEAD_LETTER": settings.topic_dead_letter,
        }
    )
    env.update(overrides)
    return env


async def cli(settings: Settings, *args: str, stdin: bytes | None = None, **env: str) -> Run:
    process = await asyncio.create_subprocess_exec(
        *command(),
        *args,
        env=environment(settings, **env),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(stdin), timeout=120)
    assert process.returncode is not None
    return Run(process.returncode, stdout, stderr)


@pytest.fixture
async def held_ledger(kafka_bootstrap: str, mongodb_uri: str) -> AsyncIterator[Ledger]:
    """The service with a hold of one second, so a held audit is dead-lettered at once."""
    settings = isolated_settings(kafka_bootstrap, mongodb_uri, audit_hold_seconds=1.0)
    async with running_ledger(settings) as ledger:
        yield ledger


@pytest.fixture
async def other_database(mongodb_uri: str) -> AsyncIterator[str]:
    """A second, empty database name (another deployment), dropped afterwards."""
    name = f"ledger_restore_{uuid.uuid4().hex[:10]}"
    yield name
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_uri)
    await client.drop_database(name)
    await client.close()


async def test_help_for_every_command(ledger: Ledger) -> None:
    for args in (
        [],
        ["serve"],
        ["schemas"],
        ["dead-letters"],
        ["dead-letters", "list"],
        ["dead-letters", "replay"],
        ["export"],
        ["import"],
    ):
        run = await cli(ledger.settings, *args, "--help")
        assert run.code == 0, (args, run.stderr)
        assert run.stdout.startswith(b"usage: campaign-ledger"), run.stdout
    assert b"Exit codes" in (await cli(ledger.settings, "import", "--help")).stdout
    # usage errors are exit code 2
    assert (await cli(ledger.settings, "dead-letters", "replay")).code == 2  # --reason needed
    assert (await cli(ledger.settings, "dead-letters", "list", "--since", "yesterday")).code == 2
    assert (await cli(ledger.settings, "import", "/nonexistent/export.json")).code == 2


async def test_unreachable_servers_exit_3(ledger: Ledger) -> None:
    run = await cli(ledger.settings, "dead-letters", "list", KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1")
    assert run.code == 3 and run.error()["error"] == "kafka_unavailable"
    run = await cli(ledger.settings, "export", "c-1", MONGODB_URI="mongodb://127.0.0.1:1")
    assert run.code == 3 and run.error()["error"] == "mongodb_unavailable"


async def test_replay_held_too_long_attaches_the_audit_once(held_ledger: Ledger) -> None:
    ledger, settings = held_ledger, held_ledger.settings
    campaign, artifact = new_id("c"), new_id("a")
    version = f"{artifact}.v1"
    # the audit agent was faster than generation, by more than AUDIT_HOLD_SECONDS
    await ledger.send(audited(campaign, version, "pass"))
    letters = await eventually(ledger.dead_letters)
    assert letters[0]["reason"] == "held_too_long"
    await ledger.send(generated(campaign, artifact, version))
    await ledger.wait_revision(campaign, 1)
    assert await ledger.count("audit_reports") == 0

    run = await cli(settings, "dead-letters", "list", "--reason", "held_too_long")
    listed = run.lines()
    assert [(d["reason"], d["key"]) for d in listed] == [("held_too_long", campaign)], run.stderr
    assert listed[0]["dead_letter"].startswith(f"{settings.topic_dead_letter}:")
    assert (await cli(settings, "dead-letters", "list", "--reason", "not_json")).lines() == []
    since_later = await cli(settings, "dead-letters", "list", "--since", "2999-01-01T00:00:00Z")
    assert since_later.code == 0 and since_later.lines() == []

    audits = await ledger.reader("audit")
    before = len(await audits.poll())
    dry = await cli(settings, "dead-letters", "replay", "--reason", "held_too_long")
    assert dry.code == 0, dry.stderr
    *planned, summary = dry.lines()
    assert summary == {"matched": 1, "sent": 0, "skipped": 0, "dry_run": True}
    assert [(p["action"], p["topic"]) for p in planned] == [
        ("would_send", settings.topic_audit_completed)
    ]
    await asyncio.sleep(1.5)
    assert len(await audits.poll()) == before  # the dry run sent nothing
    assert await ledger.count("audit_reports") == 0

    sent = await cli(settings, "dead-letters", "replay", "--reason", "held_too_long", "--yes")
    assert sent.code == 0, sent.stderr
    assert sent.lines()[-1] == {"matched": 1, "sent": 1, "skipped": 0, "dry_run": False}
    final = await ledger.wait_revision(campaign, 2)
    assert final["artifacts"][0]["active_version"]["audit_state"] == "passed"
    assert await ledger.count("audit_reports", {"campaign_id": campaign}) == 1
    assert await orphans(ledger) == 0
    # the same key, value and headers went back, with the provenance header added
    await audits.poll()
    replayed = audits.messages[-1], audits.keys[-1], audits.headers[-1]
    assert replayed[0]["data"]["version_id"] == version
    assert replayed[1] == campaign.encode()
    assert replayed[2][PROVENANCE] == listed[0]["dead_letter"].encode()

    # replaying again applies nothing twice
    again = await cli(settings, "dead-letters", "replay", "--reason", "held_too_long", "--yes")
    assert again.lines()[-1]["sent"] == 1
    # a later event on the same partition: once it is applied, the replay was seen before it
    await ledger.send(
        lifecycle("campaign.status-changed", campaign, status="auditing"), kind="audit"
    )
    await ledger.wait_revision(campaign, 3)
    assert await ledger.count("audit_reports", {"campaign_id": campaign}) == 1
    assert [s["revision"] for s in await ledger.snapshots(campaign)] == [1, 2, 3]


async def test_replayed_record_refused_again_goes_back_with_its_reason(ledger: Ledger) -> None:
    settings = ledger.settings
    campaign = new_id("c")
    bad = cloud_event("campaign.unknown-thing", {"campaign_id": campaign})
    await ledger.producer.send_and_wait(
        settings.topic_lifecycle,
        orjson.dumps(bad),
        key=campaign.encode(),
        headers=[("trace-id", b"abc-123")],
    )
    first = (await eventually(ledger.dead_letters))[0]
    assert first["reason"] == "unknown_type"

    chosen = await cli(settings, "dead-letters", "list", "--campaign", campaign)
    assert [d["reason"] for d in chosen.lines()] == ["unknown_type"]
    assert (await cli(settings, "dead-letters", "list", "--campaign", "nobody")).lines() == []
    assert (
        await cli(settings, "dead-letters", "list", "--topic", settings.topic_audit_completed)
    ).lines() == []

    run = await cli(settings, "dead-letters", "replay", "--reason", "unknown_type", "--yes")
    assert run.code == 0 and run.lines()[-1]["sent"] == 1, run.stderr
    letters = await eventually(lambda: _letters_after(ledger, 1), timeout=30)
    again = letters[1]
    assert again["reason"] == "unknown_type"
    assert again["topic"] == settings.topic_lifecycle
    assert again["offset"] != first["offset"]  # a new record: the replayed copy
    assert orjson.loads(again["value"]) == bad
    headers = {h["name"]: h.get("value") for h in again["headers"]}
    assert headers["trace-id"] == "abc-123"
    assert headers[PROVENANCE] == chosen.lines()[0]["dead_letter"]
    # replaying the replayed one keeps a single provenance header, naming the newer letter
    run = await cli(
        settings,
        "dead-letters",
        "replay",
        "--reason",
        "unknown_type",
        "--campaign",
        campaign,
        "--since",
        "2000-01-01T00:00:00Z",
        "--yes",
    )
    assert run.lines()[-1]["sent"] == 2
    letters = await eventually(lambda: _letters_after(ledger, 3), timeout=30)
    for letter in letters[2:]:
        names = [h["name"] for h in letter["headers"]]
        assert names.count(PROVENANCE) == 1


async def _letters_after(ledger: Ledger, count: int) -> list[dict[str, Any]] | None:
    letters = await ledger.dead_letters()
    return letters if len(letters) > count else None


async def _full_campaign(ledger: Ledger) -> tuple[str, dict[str, Any]]:
    """A campaign using every collection: runs, two artifacts, audits, feedback, approval,
    archive, and a status change."""
    campaign, copy_, visual, run = new_id("c"), new_id("a"), new_id("a"), new_id("r")
    events = [
        lifecycle("campaign.created", campaign, name="Spring launch", brief={"tone": "warm"}),
        lifecycle("campaign.run.started", campaign, run_id=run, execution_mode="parallel"),
        generated(campaign, copy_, f"{copy_}.v1", run_id=run, metadata={"$weird.key": 1}),
        generated(campaign, visual, f"{visual}.v1", artifact_type="visual_concept", run_id=run),
        audited(campaign, f"{copy_}.v1", "error", error="scorer timed out"),
        audited(campaign, f"{copy_}.v1", "fail", category_scores={"brand": {"score": 40}}),
        cloud_event(
            "campaign.feedback.submitted",
            {
                "campaign_id": campaign,
                "artifact_id": copy_,
                "version_id": f"{copy_}.v1",
                "feedback_text": "warmer, please",
                "tags": ["tone"],
            },
            id="fb-1",
        ),
        generated(campaign, copy_, f"{copy_}.v2", parent_version_id=f"{copy_}.v1"),
        audited(campaign, f"{copy_}.v2", "pass"),
        audited(campaign, f"{visual}.v1", "conditional"),
        lifecycle("campaign.version.approved", campaign, version_id=f"{copy_}.v2"),
        lifecycle("campaign.version.archive-requested", campaign, version_id=f"{visual}.v1"),
        lifecycle("campaign.run.completed", campaign, run_id=run, status="completed"),
        lifecycle("campaign.status-changed", campaign, status="completed"),
    ]
    for event in events:
        await ledger.send(event)
    snapshot = await ledger.wait_revision(campaign, len(events))
    return campaign, snapshot


async def _documents(client: AsyncMongoClient[dict[str, Any]], db: str, campaign: str) -> Any:
    found: dict[str, Any] = {}
    for name in ENTITY_COLLECTIONS:
        key = "_id" if name == "campaigns" else "campaign_id"
        # The campaign entity, then the service's state stored beside it.
        entity = CAMPAIGN_ENTITY_ONLY if name == "campaigns" else None
        cursor = client[db][name].find({key: campaign}, entity, sort=[("_id", 1)])
        found[name] = await cursor.to_list()
    stored = await client[db]["campaigns"].find_one({"_id": campaign})
    assert stored is not None
    found["snapshot"] = (stored["snapshot"], stored["private"], stored["revision"])
    return found


async def test_export_import_restores_the_same_documents(
    ledger: Ledger, other_database: str, tmp_path: Path
) -> None:
    settings = ledger.settings
    campaign, snapshot = await _full_campaign(ledger)

    exported = await cli(settings, "export", campaign)
    assert exported.code == 0, exported.stderr
    over_http = await ledger.http.get(f"/campaigns/{campaign}/export")
    assert exported.stdout.strip() == over_http.content  # the very same document
    path = tmp_path / "export.json"
    path.write_bytes(exported.stdout)

    published_before = len(await ledger.snapshots(campaign))
    imported = await cli(settings, "import", str(path), MONGODB_DATABASE=other_database)
    assert imported.code == 0, imported.stderr
    summary = imported.lines()[-1]
    assert summary["revision"] == snapshot["revision"] and summary["published"] == 1
    assert summary["inserted"]["versions"] == 3 and summary["marks"] > 0

    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        settings.mongodb_uri.get_secret_value(), tz_aware=True
    )
    try:
        source = await _documents(client, settings.mongodb_database, campaign)
        restored = await _documents(client, other_database, campaign)
        for name in (*ENTITY_COLLECTIONS, "snapshot"):
            assert restored[name] == source[name], name  # types and times included
        # the snapshot is published again with the exported revision and content
        republished = await eventually(lambda: _published_after(ledger, campaign, published_before))
        assert republished == snapshot
        # the events behind the documents are marked: delivering them here is a duplicate
        marks = await client[other_database]["processed_events"].count_documents(
            {"campaign_id": campaign}
        )
        assert marks == summary["marks"] == 3 + 4 + 1  # versions, audits, feedback

        # the same file again changes nothing and publishes nothing
        again = await cli(settings, "import", str(path), MONGODB_DATABASE=other_database)
        assert again.code == 0, again.stderr
        assert again.lines()[-1] == {
            "campaign_id": campaign,
            "inserted": {},
            "unchanged": sum(len(source[name]) for name in ENTITY_COLLECTIONS),
            "marks": 0,
            "revision": None,
            "published": 0,
        }
        assert await _documents(client, other_database, campaign) == restored
        # exporting the restored copy gives the same document back
        round_trip = await cli(settings, "export", campaign, MONGODB_DATABASE=other_database)
        assert round_trip.stdout == exported.stdout
        await asyncio.sleep(1.0)
        assert len(await ledger.snapshots(campaign)) == published_before + 1
    finally:
        await client.close()


async def _published_after(ledger: Ledger, campaign: str, count: int) -> dict[str, Any] | None:
    published = await ledger.snapshots(campaign)
    return published[count] if len(published) > count else None


async def test_conflicting_import_is_refused_naming_the_document(
    ledger: Ledger, other_database: str, tmp_path: Path
) -> None:
    settings = ledger.settings
    campaign, _ = await _full_campaign(ledger)
    exported = await cli(settings, "export", campaign)
    original = tmp_path / "export.json"
    original.write_bytes(exported.stdout)
    assert (await cli(settings, "import", str(original), MONGODB_DATABASE=other_database)).code == 0

    document = orjson.loads(exported.stdout)
    changed = document["versions"][1]
    changed["content"] = {"text": "rewritten"}
    extra = {**document["audit_reports"][0], "_id": "ar-extra", "attempt": 9}
    document["audit_reports"].append(extra)
    conflicting = tmp_path / "conflicting.json"
    conflicting.write_bytes(orjson.dumps(document))

    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        settings.mongodb_uri.get_secret_value(), tz_aware=True
    )
    try:
        before = await _documents(client, other_database, campaign)
        run = await cli(settings, "import", str(conflicting), MONGODB_DATABASE=other_database)
        assert run.code == 1, run.stderr
        error = run.error()
        assert error["error"] == "conflict"
        assert (error["collection"], error["_id"]) == ("versions", changed["_id"])
        assert f"versions/{changed['_id']}" in error["detail"] and "content" in error["detail"]
        # nothing of the refused import was written
        assert await _documents(client, other_database, campaign) == before
        assert (
            await client[other_database]["audit_reports"].count_documents({"_id": "ar-extra"}) == 0
        )
    finally:
        await client.close()

    # Kafka unreachable: exit 3 before anything is written (no database even)
    fresh = f"{other_database}_x"
    run = await cli(
        settings,
        "import",
        str(original),
        MONGODB_DATABASE=fresh,
        KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1",
    )
    assert run.code == 3 and run.error()["error"] == "kafka_unavailable", run.stderr
    client = AsyncMongoClient(settings.mongodb_uri.get_secret_value())
    try:
        assert fresh not in await client.list_database_names()
    finally:
        await client.close()

    not_export = tmp_path / "not.json"
    not_export.write_bytes(b'{"hello": "world"}')
    run = await cli(settings, "import", str(not_export), MONGODB_DATABASE=other_database)
    assert run.code == 1 and run.error()["error"] == "invalid_export"
    run = await cli(settings, "export", "c-does-not-exist")
    assert run.code == 1 and run.error()["error"] == "campaign_not_found"


async def test_import_over_a_purged_campaign_goes_on_from_its_last_revision(
    ledger: Ledger, other_database: str, tmp_path: Path
) -> None:
    """This database once held the same campaign id, purged at revision 7: the restored
    campaign must not publish a revision number this database already published."""
    settings = ledger.settings
    campaign, artifact = new_id("c"), new_id("a")
    await ledger.send(generated(campaign, artifact, f"{artifact}.v1"))
    await ledger.send(audited(campaign, f"{artifact}.v1", "pass"))
    snapshot = await ledger.wait_revision(campaign, 2)
    path = tmp_path / "export.json"
    path.write_bytes((await cli(settings, "export", campaign)).stdout)

    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        settings.mongodb_uri.get_secret_value(), tz_aware=True
    )
    try:
        tombstone = {
            "_id": campaign,
            "campaign_id": campaign,
            "purge_pending": False,
            "revision": 7,
            "purged_at": datetime.now(UTC),
        }
        await client[other_database][TOMBSTONES].insert_one(tombstone)
        published_before = len(await ledger.snapshots(campaign))
        run = await cli(settings, "import", str(path), MONGODB_DATABASE=other_database)
        assert run.code == 0, run.stderr
        assert run.lines()[-1]["revision"] == 8
        stored = await client[other_database]["campaigns"].find_one({"_id": campaign})
        assert stored is not None and stored["revision"] == 8
        republished = await eventually(lambda: _published_after(ledger, campaign, published_before))
        assert republished == {**snapshot, "revision": 8}
        again = await cli(settings, "import", str(path), MONGODB_DATABASE=other_database)
        assert again.code == 0, again.stderr
        assert again.lines()[-1]["inserted"] == {} and again.lines()[-1]["revision"] is None
    finally:
        await client.close()
