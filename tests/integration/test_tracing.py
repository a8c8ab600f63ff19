"""Traces end to end: a producer's trace context through Kafka into the ledger, its spans in a
real Jaeger (built from the Go module proxy by `make jaeger`, dev/jaeger.py), and the trace
context on what the ledger publishes.

Events are made by the CloudEvents Python SDK with the Distributed Tracing extension, in both
content modes; the service exports over OTLP/HTTP configured by the standard OTEL_* variables
only. Each assertion reads Jaeger's query API (/api/traces/{id}): were the producer's
`traceparent` dropped anywhere, the ledger's spans would be in other traces and the published
snapshot would point elsewhere.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from dev.jaeger import Jaeger
from tests.integration.harness import Ledger, eventually, isolated_settings, new_id, running_ledger

SERVICE_NAME = "campaign-ledger-test"


@pytest.fixture(scope="module")
def jaeger() -> Iterator[Jaeger]:
    with Jaeger() as running:
        yield running


@pytest.fixture
def traced_env(jaeger: Jaeger, monkeypatch: pytest.MonkeyPatch) -> Jaeger:
    """The standard variables only: where to export, how soon, under which name."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", jaeger.otlp_endpoint)
    monkeypatch.setenv("OTEL_SERVICE_NAME", SERVICE_NAME)
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
    monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
    monkeypatch.delenv("OTEL_SDK_DISABLED", raising=False)
    return jaeger


def producer_context() -> tuple[str, str, str]:
    """A producer's span: (trace id, span id, traceparent), sampled."""
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return trace_id, span_id, f"00-{trace_id}-{span_id}-01"


def sdk_message(
    mode: str, event_type: str, data: dict[str, Any], traceparent: str, key: str
) -> tuple[bytes, list[tuple[str, bytes]]]:
    attributes = {
        "specversion": "1.0",
        "id": new_id("e"),
        "source": "tracing-tests/agent",
        "type": event_type,
        "time": datetime.now(UTC),
        "datacontenttype": "application/json",
        "traceparent": traceparent,
        "tracestate": "agent=1",
    }
    event = CloudEvent(attributes=attributes, data=data)
    convert = ce_kafka.to_binary if mode == "binary" else ce_kafka.to_structured
    message = convert(event, JSONFormat(), key_mapper=lambda _: key.encode())
    return message.value, list(message.headers.items())


async def send(ledger: Ledger, kind: str, message: tuple[bytes, list[tuple[str, bytes]]]) -> None:
    value, headers = message
    key = None
    for name, raw in headers:
        if name == "ce_subject":
            key = raw
    await ledger.producer.send_and_wait(ledger.topic(kind), value, key=key, headers=headers)


def tags(span: dict[str, Any]) -> dict[str, Any]:
    return {tag["key"]: tag["value"] for tag in span.get("tags", [])}


def ledger_spans(found: dict[str, Any]) -> list[dict[str, Any]]:
    processes = found["processes"]
    return [
        span
        for span in found["spans"]
        if processes[span["processID"]]["serviceName"] == SERVICE_NAME
    ]


async def trace_with(
    jaeger: Jaeger, trace_id: str, *operations: str, timeout: float = 30
) -> dict[str, dict[str, Any]]:
    """The ledger's spans of `trace_id` by operation, once all of `operations` are there."""

    async def arrived() -> dict[str, dict[str, Any]] | None:
        found = jaeger.trace(trace_id)
        if found is None:
            return None
        spans = {span["operationName"]: span for span in ledger_spans(found)}
        return spans if all(name in spans for name in operations) else None

    result: dict[str, dict[str, Any]] = await eventually(arrived, timeout, interval=0.2)
    return result


def parent_of(span: dict[str, Any]) -> str | None:
    for reference in span.get("references", []):
        if reference["refType"] == "CHILD_OF":
            return str(reference["spanID"])
    return None


async def test_an_events_trace_runs_through_the_ledger_into_its_snapshot(
    kafka_bootstrap: str, mongodb_uri: str, traced_env: Jaeger
) -> None:
    jaeger = traced_env
    async with running_ledger(isolated_settings(kafka_bootstrap, mongodb_uri)) as ledger:
        campaign = new_id("c")
        trace_id, producer_span, traceparent = producer_context()
        created = {"campaign_id": campaign, "name": "Traced launch"}
        await send(
            ledger,
            "lifecycle",
            sdk_message("structured", "campaign.created", created, traceparent, campaign),
        )
        await ledger.wait_revision(campaign, 1)
        [published] = [
            m for m in (await ledger.reader("snapshot")).messages if m["subject"] == campaign
        ]

        spans = await trace_with(
            jaeger, trace_id, "ledger event campaign.created", "ledger batch", "write", "publish"
        )
        event = spans["ledger event campaign.created"]
        assert parent_of(event) == producer_span  # the producer's span is its parent
        assert tags(event)["ledger.outcome"] == "applied"
        assert tags(event)["ledger.campaign_id"] == campaign
        assert tags(event)["cloudevents.event_type"] == "campaign.created"
        assert tags(event)["ledger.revision"] == 1
        batch = spans["ledger batch"]
        assert parent_of(batch) == event["spanID"]
        for phase in ("load", "rules", "write", "commit", "publish"):
            assert parent_of(spans[phase]) == batch["spanID"], phase

        # The published snapshot continues the same trace, from the batch span.
        version, published_trace, published_span, _flags = published["traceparent"].split("-")
        assert (version, published_trace, published_span) == ("00", trace_id, batch["spanID"])

        # A read that carries the trace context is a span of that trace too (FastAPI).
        answer = await ledger.http.get(
            f"/campaigns/{campaign}/snapshot", headers={"traceparent": traceparent}
        )
        assert answer.status_code == 200
        spans = await trace_with(jaeger, trace_id, "GET /campaigns/{campaign_id}/snapshot")
        assert parent_of(spans["GET /campaigns/{campaign_id}/snapshot"]) == producer_span


async def test_a_dead_letter_and_a_held_audit_keep_their_traces(
    kafka_bootstrap: str, mongodb_uri: str, traced_env: Jaeger
) -> None:
    jaeger = traced_env
    async with running_ledger(isolated_settings(kafka_bootstrap, mongodb_uri)) as ledger:
        campaign, artifact = new_id("c"), new_id("a")
        version = f"{artifact}.v1"

        # Binary mode (ce_traceparent header), refused for its data: the dead letter's trace.
        refused_trace, _, refused_parent = producer_context()
        bad = {"campaign_id": campaign, "version_id": version, "outcome": "maybe"}
        await send(
            ledger,
            "audit",
            sdk_message("binary", "campaign.audit.completed", bad, refused_parent, campaign),
        )
        letters = await eventually(ledger.dead_letters)
        [letter] = [
            m
            for m in (await ledger.reader("dead_letter")).messages
            if m["data"]["reason"] == "invalid_data"
        ]
        assert letters
        assert letter["traceparent"].split("-")[1] == refused_trace
        spans = await trace_with(jaeger, refused_trace, "ledger event")
        assert tags(spans["ledger event"])["ledger.outcome"] == "dead_lettered"
        assert tags(spans["ledger event"])["ledger.reason"] == "invalid_data"

        # An audit before its version is held; attached later, it shows in its own trace.
        held_trace, held_span, held_parent = producer_context()
        audit = {"campaign_id": campaign, "version_id": version, "outcome": "pass"}
        await send(
            ledger,
            "audit",
            sdk_message("structured", "campaign.audit.completed", audit, held_parent, campaign),
        )
        spans = await trace_with(jaeger, held_trace, "ledger event campaign.audit.completed")
        assert tags(spans["ledger event campaign.audit.completed"])["ledger.outcome"] == "held"

        version_trace, _, version_parent = producer_context()
        generated = {
            "campaign_id": campaign,
            "artifact_id": artifact,
            "artifact_type": "copy",
            "version_id": version,
            "content": {"headline": "Traced spring"},
        }
        await send(
            ledger,
            "artifact",
            sdk_message(
                "binary", "campaign.artifact.generated", generated, version_parent, campaign
            ),
        )
        spans = await trace_with(jaeger, held_trace, "ledger attach campaign.audit.completed")
        attached = spans["ledger attach campaign.audit.completed"]
        assert parent_of(attached) == held_span
        assert tags(attached)["ledger.outcome"] == "applied"
        # ... linked to the batch that attached it, in the version's trace.
        version_spans = await trace_with(jaeger, version_trace, "ledger batch")
        links = {
            reference["spanID"]
            for reference in attached.get("references", [])
            if reference["refType"] == "FOLLOWS_FROM"
        }
        assert version_spans["ledger batch"]["spanID"] in links
