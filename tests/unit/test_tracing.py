"""The batch's spans (service.app.tracing), collected by the SDK's in-memory exporter.

The hooks are called as `BatchProcessor.process` calls them, around the real rules
(`apply_batch` over the in-memory store); the end-to-end path through Kafka, MongoDB and
Jaeger is tests/integration/test_tracing.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from service.adapters.kafka.follower import OutputTopicsFollower
from service.api.routes.streams import message
from service.app import tracing
from service.app.outbox import rejection_event, snapshot_event
from service.app.streams import RecentDeadLetters, Snapshot, SnapshotFeed
from service.domain.ingest import RawRecord, Rejection, decode
from service.domain.ledger import Inbound, Missing, apply_batch, prefetch_keys
from service.settings import Settings
from tests.unit import factories as f
from tests.unit.memory_store import Clock, MemoryStore

PRODUCER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PRODUCER_PARENT = f"00-{PRODUCER_TRACE}-00f067aa0ba902b7-01"
OTHER_TRACE = "0af7651916cd43dd8448eb211c80319c"
NOW = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.enable(provider.get_tracer("test"))
    try:
        yield exporter
    finally:
        tracing.disable()


class Batch:
    """What the processor does, reduced to the calls the tracing hooks need."""

    def __init__(self) -> None:
        self.store, self.clock = MemoryStore(), Clock()
        self.published: list[dict[str, Any]] = []

    @tracing.traced_batch
    async def process(self, records: list[RawRecord]) -> int:
        inbound: list[Inbound] = []
        rejections: list[Rejection] = []
        for record in records:
            decoded = decode(record, 1_000_000)
            if isinstance(decoded, Rejection):
                rejections.append(decoded)
            else:
                inbound.append(Inbound(decoded, record))
        tracing.begin(inbound, rejections)
        started = time.perf_counter()
        now, seq_base = self.clock.tick(len(inbound))
        view = self.store.load_view(prefetch_keys(inbound))
        loaded = time.perf_counter()
        while True:
            try:
                changes = apply_batch(inbound, view, now=now, seq_base=seq_base)
                break
            except Missing as missing:
                self.store.fill(view, missing)
        tracing.phases(started, load=loaded, rules=time.perf_counter())
        tracing.outcomes(inbound, changes, view)
        self.store.commit(changes, view)
        self.published += [snapshot_event(s, NOW) for s in changes.snapshots]
        self.published += [
            rejection_event(Rejection(r.reason, r.detail, r.inbound.record), NOW)
            for r in changes.rejections
        ]
        self.published += [rejection_event(r, NOW) for r in rejections]
        return len(records)


def generated(campaign: str, version_id: str, traceparent: str | None = None) -> Inbound:
    data = {
        "campaign_id": campaign,
        "artifact_id": f"{campaign}.copy",
        "artifact_type": "copy",
        "content": {"text": version_id},
        "version_id": version_id,
    }
    trace = {"traceparent": traceparent} if traceparent else {}
    return f.make_event("campaign.artifact.generated", data, **trace)


def audited(campaign: str, version_id: str, traceparent: str | None = None) -> Inbound:
    data = {"campaign_id": campaign, "version_id": version_id, "outcome": "pass"}
    trace = {"traceparent": traceparent} if traceparent else {}
    return f.make_event("campaign.audit.completed", data, **trace)


def by_name(exporter: InMemorySpanExporter) -> dict[str, list[ReadableSpan]]:
    found: dict[str, list[ReadableSpan]] = {}
    for span in exporter.get_finished_spans():
        found.setdefault(span.name, []).append(span)
    return found


def trace_id(span: ReadableSpan) -> str:
    assert span.context is not None
    return f"{span.context.trace_id:032x}"


def traceparent_of(span: ReadableSpan) -> str:
    assert span.context is not None
    context = span.context
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"


async def test_off_makes_no_span_and_adds_no_attribute() -> None:
    tracing.disable()
    batch = Batch()
    record = generated("c-off", "v-1").record
    assert await batch.process([record]) == 1
    assert "traceparent" not in batch.published[0]
    assert tracing.trace_attributes() == {}


async def test_an_event_continues_its_producers_trace(spans: InMemorySpanExporter) -> None:
    batch = Batch()
    item = generated("c-1", "v-1", traceparent=PRODUCER_PARENT)
    await batch.process([item.record])
    named = by_name(spans)
    [event] = named["ledger event campaign.artifact.generated"]
    [batch_span] = named["ledger batch"]
    assert trace_id(event) == PRODUCER_TRACE
    assert event.parent is not None and f"{event.parent.span_id:016x}" == "00f067aa0ba902b7"
    assert event.attributes is not None
    assert event.attributes["ledger.outcome"] == "applied"
    assert event.attributes["ledger.campaign_id"] == "c-1"
    assert event.attributes["cloudevents.event_type"] == "campaign.artifact.generated"
    assert event.attributes["ledger.revision"] == 1
    # One trace: the batch hangs under the event, its phases under the batch.
    assert trace_id(batch_span) == PRODUCER_TRACE
    assert batch_span.parent is not None and event.context is not None
    assert batch_span.parent.span_id == event.context.span_id
    assert batch_span.links == ()  # its parent is its only record
    assert event.links == ()  # and the batch, its child, needs no link back
    for phase in ("load", "rules"):
        [span] = named[phase]
        assert span.parent is not None and batch_span.context is not None
        assert span.parent.span_id == batch_span.context.span_id
    # What is published carries the batch span's traceparent.
    assert batch.published[0]["traceparent"] == traceparent_of(batch_span)


async def test_binary_mode_headers_carry_the_trace(spans: InMemorySpanExporter) -> None:
    item = generated("c-2", "v-1")
    document: dict[str, Any] = orjson.loads(item.record.value)
    headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", document["id"].encode()),
        ("ce_source", document["source"].encode()),
        ("ce_type", document["type"].encode()),
        ("ce_traceparent", PRODUCER_PARENT.encode()),
        ("content-type", b"application/json"),
    ]
    record = RawRecord(
        item.record.topic,
        0,
        7,
        b"c-2",
        orjson.dumps(document["data"]),
        tuple(headers),
        1_700_000_000_000,
    )
    await Batch().process([record])
    [event] = by_name(spans)["ledger event campaign.artifact.generated"]
    assert trace_id(event) == PRODUCER_TRACE


async def test_no_traceparent_starts_a_new_trace(spans: InMemorySpanExporter) -> None:
    await Batch().process([generated("c-3", "v-1").record])
    [event] = by_name(spans)["ledger event campaign.artifact.generated"]
    assert event.parent is None
    assert trace_id(event) != PRODUCER_TRACE


async def test_outcomes_held_duplicate_dead_lettered(spans: InMemorySpanExporter) -> None:
    batch = Batch()
    made = generated("c-4", "v-1", traceparent=PRODUCER_PARENT)
    await batch.process([made.record])
    spans.clear()
    held = audited("c-4", "v-9", traceparent=f"00-{OTHER_TRACE}-00f067aa0ba902b7-01")
    foreign = audited("c-other", "v-1")  # v-1 belongs to c-4: campaign_mismatch
    refused = RawRecord("t", 0, 99, b"c-4", b"not json")
    await batch.process([made.record, held.record, foreign.record, refused])
    outcomes = {}
    for span in spans.get_finished_spans():
        if span.name.startswith("ledger event") and span.attributes is not None:
            outcomes[span.attributes["messaging.kafka.offset"]] = (
                span.attributes.get("ledger.outcome"),
                span.attributes.get("ledger.reason"),
            )
    assert outcomes == {
        made.record.offset: ("duplicate", None),
        held.record.offset: ("held", None),
        foreign.record.offset: ("dead_lettered", "campaign_mismatch"),
        99: ("dead_lettered", "not_json"),
    }
    [batch_span] = by_name(spans)["ledger batch"]
    # Several traces in one batch: the batch is a trace of its own, linked to each.
    assert batch_span.parent is None
    assert len(batch_span.links) == 4
    for span in spans.get_finished_spans():
        if span.name.startswith("ledger event"):
            assert [link.context.span_id for link in span.links] == [batch_span.context.span_id]
    dead = [e for e in batch.published if e["type"] == "campaign.event.rejected"]
    assert len(dead) == 2
    assert {e["traceparent"] for e in dead} == {traceparent_of(batch_span)}


async def test_a_held_event_attached_later_shows_in_its_own_trace(
    spans: InMemorySpanExporter,
) -> None:
    batch = Batch()
    held = audited("c-5", "v-1", traceparent=PRODUCER_PARENT)
    await batch.process([held.record])
    spans.clear()
    version = generated("c-5", "v-1", f"00-{OTHER_TRACE}-00f067aa0ba902b7-01")
    await batch.process([version.record])
    named = by_name(spans)
    [attached] = named["ledger attach campaign.audit.completed"]
    [batch_span] = named["ledger batch"]
    assert trace_id(attached) == PRODUCER_TRACE
    assert attached.attributes is not None
    assert attached.attributes["ledger.outcome"] == "applied"
    assert batch_span.context is not None
    assert [link.context.span_id for link in attached.links] == [batch_span.context.span_id]


async def test_a_sweep_marks_its_dead_letters_in_their_arrival_trace(
    spans: InMemorySpanExporter,
) -> None:
    record = audited("c-6", "v-1", traceparent=PRODUCER_PARENT).record

    class Sweep:
        @tracing.traced_sweep("ledger expire held")
        async def run(self, dead: bool) -> dict[str, Any] | None:
            if not dead:
                return None
            return rejection_event(Rejection("held_too_long", "late", record), NOW)

    assert await Sweep().run(False) is None
    assert spans.get_finished_spans() == ()  # nothing expired, no trace
    letter = await Sweep().run(True)
    named = by_name(spans)
    [sweep] = named["ledger expire held"]
    [expired] = named["ledger dead-lettered campaign.audit.completed"]
    assert letter is not None and letter["traceparent"] == traceparent_of(sweep)
    assert trace_id(expired) == PRODUCER_TRACE
    assert expired.attributes is not None
    assert expired.attributes["ledger.reason"] == "held_too_long"


def test_a_stream_message_repeats_the_published_traceparent() -> None:
    published = snapshot_event(
        {"campaign_id": "c-7", "revision": 3, "deleted": False, "counts": {}}, NOW
    )
    published["traceparent"] = PRODUCER_PARENT
    feed = SnapshotFeed(max_streams=10, cache_entries=10, cache_seconds=0, backlog=4)
    OutputTopicsFollower(Settings(), feed, RecentDeadLetters())._snapshot(orjson.dumps(published))
    snapshot = feed.cached("c-7")
    assert snapshot is not None and snapshot.traceparent == PRODUCER_PARENT
    assert message(snapshot, "3") == (
        b"event: snapshot\nid: 3\ntraceparent: "
        + PRODUCER_PARENT.encode()
        + b"\ndata: "
        + snapshot.body
        + b"\n\n"
    )
    # A snapshot read from MongoDB has none: the message is as it always was.
    untraced = Snapshot.of(published["data"])
    assert message(untraced, "3") == b"event: snapshot\nid: 3\ndata: " + untraced.body + b"\n\n"
