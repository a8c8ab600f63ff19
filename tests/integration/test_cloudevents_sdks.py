"""Producers this project did not write, in both CloudEvents content modes.

The official CloudEvents SDKs — Python (`cloudevents` on PyPI, its Kafka binding, produced with
aiokafka) and Java (`io.cloudevents:cloudevents-kafka` on the Apache Kafka Java client, built
from Maven Central and compiled here) — send one campaign's story through real Kafka into the
running service. Each step names the content mode it is sent in; the story holds an event
held for its version, audits without `time`, the same events again in the other mode, and a
record whose content type is not JSON. The outcome must be the same whoever sent it.
"""

from __future__ import annotations

import asyncio
import base64
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from cloudevents import __version__ as CLOUDEVENTS_VERSION
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from cloudevents.v1 import kafka as ce_kafka_v1
from cloudevents.v1.http import CloudEvent as CloudEventV1

from dev.servers.common import CACHE_DIR, REPO_ROOT, StackError
from dev.servers.jvm import ensure_kafka_jars, find_java
from tests.events import NOW, cloud_event
from tests.integration.harness import (
    Ledger,
    eventually,
    isolated_settings,
    new_id,
    running_ledger,
)

JAVA_DIR = REPO_ROOT / "tests" / "sdk" / "java"
JAVA_LIB = CACHE_DIR / "cloudevents-java" / "lib"
FINAL_REVISION = 7  # created, v1, audit v1 #1, feedback, v2, held audit v2, audit v1 #2
HELD_AFTER = 3  # the first three steps end with an audit of a version not sent yet


@dataclass(frozen=True)
class Step:
    mode: str  # "binary" or "structured"
    kind: str  # the input topic (harness.TOPIC_KINDS)
    event: dict[str, Any]  # the CloudEvent in the JSON format; `time` may be absent


@dataclass(frozen=True)
class Story:
    campaign: str
    artifact: str
    v1: str
    v2: str
    feedback_id: str
    steps: list[Step]


def agent_event(
    event_type: str, data: dict[str, Any], *, id: str | None = None, timed: bool = True
) -> dict[str, Any]:
    """An event as the agents' SDK producer sends it: its source, a JSON content type."""
    return cloud_event(
        event_type,
        data,
        id=id or new_id("e"),
        source="sdk-tests/agent",
        time=NOW if timed else None,
        datacontenttype="application/json",
    )


def story() -> Story:
    c, a = new_id("c"), new_id("a")
    v1, v2, feedback_id = f"{a}.v1", f"{a}.v2", new_id("fb")

    def generated(version: str, **links: str) -> dict[str, Any]:
        data = {
            "campaign_id": c,
            "artifact_id": a,
            "artifact_type": "copy",
            "version_id": version,
            "content": {"headline": f"Spring is here ({version})"},
            **links,
        }
        return agent_event("campaign.artifact.generated", data)

    def audited(version: str, outcome: str, *, timed: bool = True) -> dict[str, Any]:
        data = {"campaign_id": c, "version_id": version, "outcome": outcome}
        return agent_event("campaign.audit.completed", data, timed=timed)

    gen1 = generated(v1)
    gen2 = generated(v2, parent_version_id=v1, feedback_id=feedback_id)
    untyped = agent_event("campaign.artifact.generated", {})
    untyped.update(datacontenttype="text/plain", data="Spring is here")
    feedback = agent_event(
        "campaign.feedback.submitted",
        {"campaign_id": c, "artifact_id": a, "version_id": v1, "feedback_text": "Warmer tone"},
        id=feedback_id,
    )
    created = agent_event("campaign.created", {"campaign_id": c, "name": "SDK launch"})
    del created["datacontenttype"]  # optional: absent is JSON too
    steps = [
        Step("structured", "lifecycle", created),
        Step("binary", "artifact", gen1),
        Step("binary", "audit", audited(v2, "pass", timed=False)),  # before v2: held
        # (HELD_AFTER: the senders wait here until that audit is held)
        Step("binary", "audit", audited(v1, "fail")),
        Step("structured", "feedback", feedback),
        Step("structured", "artifact", gen2),
        Step("structured", "audit", audited(v1, "pass", timed=False)),
        Step("structured", "artifact", gen1),  # the same event in the other mode: once
        Step("binary", "artifact", gen2),  # and the other way round
        Step("binary", "artifact", untyped),  # not JSON: invalid_data
    ]
    return Story(c, a, v1, v2, feedback_id, steps)


async def wait_held(ledger: Ledger, s: Story) -> None:
    """The binary audit of v2 is held (stored, waiting for its version) before v2 is sent."""

    async def held() -> int:
        return await ledger.count("held_events", {"campaign_id": s.campaign})

    assert await eventually(held, timeout=60) == 1


async def assert_stored(ledger: Ledger, s: Story, started: datetime) -> None:
    """Every event stored once, audits attached in order, one dead letter: the same outcome
    whichever producer sent the story and in which mode."""
    topic = ledger.topic("artifact")

    async def dead_lettered() -> list[dict[str, Any]]:
        return [d for d in await ledger.dead_letters() if d["key"] == s.campaign]

    dead_letters = await eventually(dead_lettered, timeout=60)
    assert len(dead_letters) == 1, dead_letters
    [dead] = dead_letters
    assert dead["reason"] == "invalid_data", dead
    assert "text/plain" in dead["detail"]
    assert dead["topic"] == topic and dead["value"] == "Spring is here"
    headers = {h["name"]: h.get("value") for h in dead["headers"]}
    assert headers["ce_specversion"] == "1.0"
    assert headers["content-type"] == "text/plain"
    assert headers["ce_type"] == "campaign.artifact.generated"

    snapshot = await ledger.wait_revision(s.campaign, FINAL_REVISION, timeout=60)
    assert snapshot["revision"] == FINAL_REVISION, snapshot
    assert snapshot["counts"] == {
        "versions": 2,
        "audit_reports": 3,
        "iteration_logs": 1,
        "archived_versions": 0,
        "approved_versions": 0,
    }
    [artifact] = snapshot["artifacts"]
    assert artifact["active_version"]["version_id"] == s.v2
    assert artifact["active_version"]["audit_state"] == "passed"

    versions = await ledger.db["versions"].find({"campaign_id": s.campaign}).to_list()
    assert sorted((v["_id"], v["version_number"]) for v in versions) == [(s.v1, 1), (s.v2, 2)]
    assert {v["_id"]: v.get("parent_version_id") for v in versions}[s.v2] == s.v1

    lineage = (await ledger.http.get(f"/versions/{s.v1}/audits")).json()
    assert [(r["attempt"], r["outcome"]) for r in lineage["items"]] == [(1, "fail"), (2, "pass")]
    assert lineage["audit_state"] == "passed"
    held_then_attached = (await ledger.http.get(f"/versions/{s.v2}/audits")).json()
    assert [(r["attempt"], r["outcome"]) for r in held_then_attached["items"]] == [(1, "pass")]
    # audits sent without `time` carry the record's timestamp (or the SDK's own time)
    window = (started - timedelta(seconds=5), datetime.now(UTC) + timedelta(seconds=5))
    for report in [*lineage["items"], *held_then_attached["items"]]:
        completed = datetime.fromisoformat(report["completed_at"].replace("Z", "+00:00"))
        assert window[0] <= completed <= window[1], report

    logs = await ledger.db["iteration_logs"].find({"campaign_id": s.campaign}).to_list()
    assert [(log["feedback_id"], log["version_id"]) for log in logs] == [(s.feedback_id, s.v1)]
    assert await ledger.count("held_events", {"campaign_id": s.campaign}) == 0

    # the duplicates (each event again in the other mode) published nothing more
    await asyncio.sleep(1.0)
    assert [r["revision"] for r in await ledger.snapshots(s.campaign)] == list(
        range(1, FINAL_REVISION + 1)
    )
    # what the service publishes stays structured mode, whatever mode came in
    for kind in ("snapshot", "dead_letter"):
        reader = await ledger.reader(kind)
        assert reader.headers, kind
        for headers, message in zip(reader.headers, reader.messages, strict=True):
            assert headers.get("content-type") == b"application/cloudevents+json", headers
            assert "ce_specversion" not in headers
            assert message["specversion"] == "1.0"


# ---- the Python SDK -----------------------------------------------------------------------


def python_sdk_core(step: Step, key: bytes) -> tuple[bytes, list[tuple[str, bytes]]]:
    """cloudevents 2.x: cloudevents.core.bindings.kafka."""
    attributes = {k: v for k, v in step.event.items() if k != "data"}
    if "time" in attributes:
        attributes["time"] = datetime.fromisoformat(attributes["time"].replace("Z", "+00:00"))
    event = CloudEvent(attributes=attributes, data=step.event["data"])
    convert = ce_kafka.to_binary if step.mode == "binary" else ce_kafka.to_structured
    message = convert(event, JSONFormat(), key_mapper=lambda _: key)
    return message.value, list(message.headers.items())


def python_sdk_v1(step: Step, key: bytes) -> tuple[bytes, list[tuple[str, bytes]]]:
    """The 1.x API (`cloudevents.kafka` there), kept in 2.x as cloudevents.v1.kafka."""
    attributes = {k: v for k, v in step.event.items() if k != "data"}
    event = CloudEventV1(attributes, step.event["data"])

    def data_marshaller(data: Any) -> bytes:
        return data.encode() if isinstance(data, str) else orjson.dumps(data)

    if step.mode == "binary":
        message = ce_kafka_v1.to_binary(
            event, data_marshaller=data_marshaller, key_mapper=lambda _: key
        )
    else:
        message = ce_kafka_v1.to_structured(event, key_mapper=lambda _: key)
    value = message.value if isinstance(message.value, bytes) else message.value.encode()
    return value, list(message.headers.items())


Convert = Callable[[Step, bytes], tuple[bytes, list[tuple[str, bytes]]]]


@pytest.mark.parametrize("convert", [python_sdk_core, python_sdk_v1], ids=["core", "v1-api"])
async def test_the_python_sdk_in_both_modes(
    kafka_bootstrap: str, mongodb_uri: str, convert: Convert
) -> None:
    async with running_ledger(isolated_settings(kafka_bootstrap, mongodb_uri)) as ledger:
        s = story()
        started = datetime.now(UTC)
        key = s.campaign.encode()
        for number, step in enumerate(s.steps, 1):
            value, headers = convert(step, key)
            if step.mode == "binary":
                assert dict(headers)["ce_specversion"] == b"1.0"
                assert dict(headers)["ce_id"] == step.event["id"].encode()
            else:
                assert "ce_specversion" not in dict(headers)
                assert orjson.loads(value)["id"] == step.event["id"]
            await ledger.producer.send_and_wait(
                ledger.topic(step.kind), value, key=key, headers=headers
            )
            if number == HELD_AFTER:
                await wait_held(ledger, s)
        await assert_stored(ledger, s, started)


def test_the_python_sdk_version_is_the_pinned_one() -> None:
    pinned = (REPO_ROOT / "pyproject.toml").read_text()
    assert f'"cloudevents=={CLOUDEVENTS_VERSION}"' in pinned


# ---- the Java SDK -------------------------------------------------------------------------


def java_producer(work: Path) -> list[str]:
    """The Java producer compiled against the SDK's jars: the command that runs it."""
    javac = shutil.which("javac")
    if javac is None:
        raise StackError("javac not found: a JDK 17+ is needed for the Java SDK test")
    lib = ensure_kafka_jars(JAVA_LIB, JAVA_DIR / "pom.xml", expect="cloudevents-kafka-*.jar")
    classes = work / "classes"
    compiled = subprocess.run(
        [javac, "-cp", f"{lib}/*", "-d", str(classes), str(JAVA_DIR / "Producer.java")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr
    return [find_java(), "-cp", f"{classes}:{lib}/*", "Producer"]


async def test_the_java_sdk_default_serializer_and_structured_mode(
    kafka_bootstrap: str, mongodb_uri: str, tmp_path: Path
) -> None:
    command = await asyncio.to_thread(java_producer, tmp_path)
    async with running_ledger(isolated_settings(kafka_bootstrap, mongodb_uri)) as ledger:
        s = story()
        started = datetime.now(UTC)
        begun = time.monotonic()
        parts = (s.steps[:HELD_AFTER], s.steps[HELD_AFTER:])
        for part, steps in enumerate(parts, 1):
            scenario = tmp_path / f"scenario-{part}.tsv"
            scenario.write_text(
                "".join(
                    f"{step.mode}\t{ledger.topic(step.kind)}\t{s.campaign}\t"
                    f"{orjson.dumps(step.event).decode()}\n"
                    for step in steps
                )
            )
            sent = await asyncio.to_thread(
                subprocess.run,
                [*command, ledger.settings.kafka_bootstrap_servers, str(scenario)],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert sent.returncode == 0, sent.stdout + sent.stderr
            assert f"sent {len(steps)} events" in sent.stdout, sent.stdout
            if part == 1:
                await wait_held(ledger, s)
        print(f"java producer: {time.monotonic() - begun:.1f}s for {len(s.steps)} events")
        await assert_stored(ledger, s, started)


# ---- the original header bytes, end to end ------------------------------------------------


async def test_header_bytes_reach_decoding_and_the_dead_letter_unchanged(
    kafka_bootstrap: str, mongodb_uri: str
) -> None:
    """FastStream's parser would fail or replace undecodable header bytes; the service reads
    the originals: a `ce_source` that is not UTF-8 is refused (not read as U+FFFD), and the
    dead letter carries every header exactly, for replay."""
    async with running_ledger(isolated_settings(kafka_bootstrap, mongodb_uri)) as ledger:
        c = new_id("c")
        headers = [
            ("ce_specversion", b"1.0"),
            ("ce_id", b"e-1"),
            ("ce_source", b"agent-\xff\xfe"),
            ("ce_type", b"campaign.created"),
            ("traceparent", b"\x00\xffraw"),
        ]
        value = orjson.dumps({"campaign_id": c, "name": "Bytes"})
        await ledger.producer.send_and_wait(
            ledger.topic("lifecycle"), value, key=c.encode(), headers=headers
        )

        async def dead_lettered() -> list[dict[str, Any]]:
            return [d for d in await ledger.dead_letters() if d["key"] == c]

        [dead] = await eventually(dead_lettered, timeout=60)
        assert dead["reason"] == "not_cloudevent", dead
        assert "ce_source" in dead["detail"]
        assert dead["value"] == value.decode()
        assert dead["headers"] == [
            {"name": "ce_specversion", "value": "1.0"},
            {"name": "ce_id", "value": "e-1"},
            {"name": "ce_source", "value_base64": base64.b64encode(b"agent-\xff\xfe").decode()},
            {"name": "ce_type", "value": "campaign.created"},
            {"name": "traceparent", "value_base64": base64.b64encode(b"\x00\xffraw").decode()},
        ]
        assert (await ledger.snapshot(c)).status_code == 404
