"""Ingest.decode in binary content mode (CloudEvents Kafka binding): attributes in `ce_*`
headers, `content-type` as datacontenttype, the value is `data`. Every rule of structured mode
holds alike; the same event in either mode is the same Event."""

from __future__ import annotations

import base64
import dataclasses
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.domain.events import Event, EventType
from service.domain.ingest import (
    RawRecord,
    Rejection,
    decode,
    record_document,
    record_from_document,
)
from tests.unit import factories as f
from tests.unit.memory_store import MemoryStore, deliver, one_by_one

LIMIT = 1024 * 1024
_UNSET: Any = object()


def artifact_data(**overrides: Any) -> dict[str, Any]:
    return {
        "campaign_id": "c-1",
        "artifact_id": "a-1",
        "artifact_type": "copy",
        "content": {"headline": "Spring is here"},
        **overrides,
    }


def artifact_event(**overrides: Any) -> dict[str, Any]:
    data = overrides.pop("data", artifact_data())
    return f.cloud_event(EventType.ARTIFACT_GENERATED, data, **overrides)


def binary(
    event: dict[str, Any],
    *,
    content_type: str | None = "application/json",
    key: Any = _UNSET,
    timestamp_ms: int | None = 1_740_830_400_000,
    headers: tuple[tuple[str, bytes], ...] = (),
    value: bytes | None = _UNSET,
) -> RawRecord:
    """The record the CloudEvents SDKs' Kafka binding makes of `event` in binary mode."""
    ce_headers = tuple(
        (f"ce_{name}", str(attribute).encode("utf-8"))
        for name, attribute in event.items()
        if name not in {"data", "datacontenttype"}
    )
    if content_type is not None:
        ce_headers += (("content-type", content_type.encode("utf-8")),)
    structured = f.record(event) if key is _UNSET else f.record(event, key=key)
    return dataclasses.replace(
        structured,
        value=orjson.dumps(event["data"]) if value is _UNSET else value,
        headers=ce_headers + headers,
        timestamp_ms=timestamp_ms,
    )


def decoded(raw: RawRecord) -> Event:
    result = decode(raw, LIMIT)
    assert isinstance(result, Event), result
    return result


def rejected(raw: RawRecord, reason: str, limit: int = LIMIT) -> Rejection:
    result = decode(raw, limit)
    assert isinstance(result, Rejection), f"expected {reason}, got an event: {result}"
    assert result.reason == reason, (result.reason, result.detail)
    assert result.record is raw
    return result


def without_header(raw: RawRecord, name: str) -> RawRecord:
    return dataclasses.replace(raw, headers=tuple(h for h in raw.headers if h[0] != name))


# ---- the same event as in structured mode ----------------------------------------------------


def test_a_binary_event_decodes_as_the_structured_one() -> None:
    event = artifact_event(id="e-1", source="agents/copy", subject="c-1")
    from_binary = decoded(binary(event))
    assert from_binary == decoded(f.record(event))
    assert from_binary.key == "11:agents/copye-1"
    assert from_binary.time == datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def test_binary_mode_is_told_by_the_specversion_header_alone() -> None:
    event = artifact_event()
    structured = f.record(event)
    # headers other than ce_specversion, even ce_ ones, leave a record in structured mode
    with_headers = dataclasses.replace(
        structured, headers=(("ce_id", b"other"), ("content-type", b"application/json"))
    )
    assert not with_headers.binary_mode
    assert decoded(with_headers).id == event["id"]
    assert binary(event).binary_mode


def test_without_ce_time_the_record_timestamp_is_the_time() -> None:
    event = {k: v for k, v in artifact_event().items() if k != "time"}
    assert decoded(binary(event, timestamp_ms=1_740_830_400_007)).time == datetime(
        2025, 3, 1, 12, 0, 0, 7000, tzinfo=UTC
    )


def test_without_ce_time_nor_timestamp_it_is_not_a_cloudevent() -> None:
    event = {k: v for k, v in artifact_event().items() if k != "time"}
    assert "time" in rejected(binary(event, timestamp_ms=None), "not_cloudevent").detail


def test_ce_time_wins_over_the_record_timestamp() -> None:
    raw = binary(artifact_event(time="2025-03-01T14:30:00.123+02:30"), timestamp_ms=5)
    assert decoded(raw).time == datetime(2025, 3, 1, 12, 0, 0, 123000, tzinfo=UTC)


def test_extension_attributes_and_other_headers_are_accepted() -> None:
    raw = binary(
        artifact_event(),
        headers=(
            ("ce_traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            ("ce_partitionkey", b"c-1"),
            ("x-request-id", b"\xff\xfe not text, not ours"),
        ),
    )
    assert decoded(raw).data.campaign_id == "c-1"


def test_header_names_are_read_whatever_their_case() -> None:
    event = artifact_event()
    raw = binary(event)
    upper = dataclasses.replace(raw, headers=tuple((n.upper(), v) for n, v in raw.headers))
    assert upper.binary_mode
    assert decoded(upper) == decoded(raw)


def test_a_keyless_binary_record_takes_the_campaign_from_data() -> None:
    assert decoded(binary(artifact_event(), key=None)).campaign_id == "c-1"


# ---- content type ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "application/json",
        "application/json; charset=utf-8",
        "APPLICATION/JSON",
        "application/vnd.acme.artifact+json",
    ],
)
def test_json_content_types_are_accepted(content_type: str | None) -> None:
    decoded(binary(artifact_event(), content_type=content_type))


@pytest.mark.parametrize(
    ("content_type", "value"),
    [
        ("text/plain", b"Spring is here"),  # not JSON either: the type is the reason given
        ("application/xml", b"<artifact/>"),
        ("application/octet-stream", b"\x00\x01"),
        ("text/plain", orjson.dumps(artifact_data())),  # JSON, but not declared as such
        ("application/jsonl", orjson.dumps(artifact_data())),
    ],
)
def test_a_content_type_that_is_not_json_is_invalid_data(content_type: str, value: bytes) -> None:
    raw = binary(artifact_event(), content_type=content_type, value=value)
    assert content_type in rejected(raw, "invalid_data").detail


# ---- every dead-letter reason holds for binary mode ---------------------------------------------


@pytest.mark.parametrize("name", ["ce_id", "ce_source", "ce_type", "ce_specversion"])
def test_a_missing_attribute_header_is_not_a_cloudevent(name: str) -> None:
    raw = without_header(binary(artifact_event()), name)
    if name == "ce_specversion":  # without it the record is structured mode: data is no event
        assert not raw.binary_mode
    rejection = rejected(raw, "not_cloudevent")
    assert name.removeprefix("ce_") in rejection.detail


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ce_specversion", b"0.3"),
        ("ce_specversion", b""),
        ("ce_id", b""),
        ("ce_time", b"yesterday"),
        ("ce_time", b"2025-03-01T12:00:00"),  # no zone
        ("ce_time", b"1740830400"),
        ("ce_source", b"\xff\xfe"),  # not UTF-8
    ],
)
def test_a_wrong_attribute_header_is_not_a_cloudevent(name: str, value: bytes) -> None:
    raw = without_header(binary(artifact_event()), name)
    raw = dataclasses.replace(raw, headers=(*raw.headers, (name, value)))
    assert name.removeprefix("ce_") in rejected(raw, "not_cloudevent").detail


def test_an_attribute_header_sent_twice_is_not_a_cloudevent() -> None:
    raw = binary(artifact_event(), headers=(("ce_id", b"another"),))
    assert "more than once" in rejected(raw, "not_cloudevent").detail


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "empty_value"),
        (b"", "empty_value"),
        (b"\xff\xfe{}", "not_utf8"),
        (b"{not json", "not_json"),
        (b"NaN", "not_json"),
        (b'{"campaign_id": "c-1", "n": 123456789012345678901234567890}', "unstorable_value"),
        (b"[1, 2]", "not_cloudevent"),  # data must be an object
        (b'"text"', "not_cloudevent"),
        (b'{"campaign_id": "c-1"}', "invalid_data"),
    ],
)
def test_value_reasons(value: bytes | None, reason: str) -> None:
    rejected(binary(artifact_event(), value=value), reason)


def test_too_large() -> None:
    raw = binary(artifact_event(data=artifact_data(content={"t": "x" * 500})))
    assert "MAX_EVENT_BYTES=100" in rejected(raw, "too_large", limit=100).detail


def test_nesting_too_deep_is_unstorable() -> None:
    deep: Any = "leaf"
    for _ in range(80):
        deep = {"n": deep}
    rejected(binary(artifact_event(data=artifact_data(content=deep))), "unstorable_value")


def test_unknown_and_outbound_types() -> None:
    rejected(binary(artifact_event(type="campaign.exploded")), "unknown_type")
    rejected(binary(artifact_event(type="campaign.snapshot.updated")), "unknown_type")


def test_campaign_mismatch_with_the_key_and_with_ce_subject() -> None:
    rejected(binary(artifact_event(), key="c-2"), "campaign_mismatch")
    assert "subject" in rejected(binary(artifact_event(subject="c-2")), "campaign_mismatch").detail


# ---- the dead letter keeps the headers ------------------------------------------------------


def test_the_dead_letter_carries_the_original_headers_in_order() -> None:
    raw = binary(
        artifact_event(id="e-9", type="campaign.exploded"),
        headers=(("trace", b"\xff\x00"), ("ce_custom", b"caf\xc3\xa9")),
    )
    data = rejected(raw, "unknown_type").as_data()
    assert data["value"] == orjson.dumps(artifact_data()).decode()
    assert data["headers"][0] == {"name": "ce_specversion", "value": "1.0"}
    assert {"name": "ce_id", "value": "e-9"} in data["headers"]
    assert {"name": "content-type", "value": "application/json"} in data["headers"]
    assert data["headers"][-2:] == [
        {"name": "trace", "value_base64": base64.b64encode(b"\xff\x00").decode()},
        {"name": "ce_custom", "value": "café"},
    ]
    assert [h["name"] for h in data["headers"]] == [name for name, _ in raw.headers]
    assert orjson.loads(orjson.dumps(data)) == data


# ---- stored and read back (held events), idempotence across modes ---------------------------


def test_a_record_survives_its_stored_form() -> None:
    raw = binary(
        {k: v for k, v in artifact_event().items() if k != "time"},
        headers=(("opaque", b"\xff"),),
        timestamp_ms=1_740_830_400_321,
    )
    again = record_from_document(record_document(raw))
    assert again == raw
    assert decoded(again) == decoded(raw)


def test_a_stored_form_without_headers_still_reads() -> None:
    raw = f.record(artifact_event())
    document = {
        k: v for k, v in record_document(raw).items() if k not in {"headers", "timestamp_ms"}
    }
    assert record_from_document(document) == raw


def test_the_same_event_in_both_modes_is_one_event() -> None:
    store = MemoryStore()
    event = artifact_event(id="e-both", data=artifact_data(version_id="v-1"))
    delivery = deliver(store, one_by_one([f.inbound(binary(event)), f.inbound(f.record(event))]))
    assert [s["revision"] for s in delivery.snapshots] == [1]
    assert list(store.version_records) == ["v-1"]
    # and the other way round, within one batch
    other = MemoryStore()
    delivery = deliver(other, [[f.inbound(f.record(event)), f.inbound(binary(event))]])
    assert [s["revision"] for s in delivery.snapshots] == [1]


def test_a_binary_audit_is_held_until_its_version_then_attached() -> None:
    store = MemoryStore()
    audit = f.cloud_event(
        EventType.AUDIT_COMPLETED,
        {"campaign_id": "c-1", "version_id": "v-1", "outcome": "pass"},
        id="audit-1",
    )
    del audit["time"]  # the record's timestamp stands in, also when the event is released
    deliver(store, [[f.inbound(binary(audit))]])
    [held] = store.held.values()
    # what a store keeps of the held record decodes to the same event again
    assert decoded(record_from_document(record_document(held.inbound.record))) == (
        held.inbound.event
    )
    event = artifact_event(data=artifact_data(version_id="v-1"))
    delivery = deliver(store, [[f.inbound(binary(event))]])
    assert [s["counts"]["audit_reports"] for s in delivery.snapshots] == [0, 1]
    assert store.held == {}
    [report] = store.audit_reports.values()
    assert report["version_id"] == "v-1"


# ---- property: any valid event reads the same in both modes ----------------------------------

TEXT = st.text(
    st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), min_size=1, max_size=40
)
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=20,
)


@st.composite
def valid_events(draw: st.DrawFn) -> tuple[dict[str, Any], int]:
    campaign = draw(st.from_regex(r"[A-Za-z0-9._:-]{1,20}", fullmatch=True))
    data = artifact_data(campaign_id=campaign, content=draw(st.dictionaries(TEXT, JSON_VALUES)))
    event = artifact_event(id=draw(TEXT), source=draw(TEXT), data=data)
    if draw(st.booleans()):
        del event["time"]
    if draw(st.booleans()):
        event["subject"] = campaign
    names = st.from_regex(r"[a-z0-9]{1,12}", fullmatch=True).filter(
        lambda n: n not in {"specversion", "id", "source", "type", "time", "subject", "data"}
    )
    event.update(draw(st.dictionaries(names, TEXT, max_size=3)))  # extension attributes
    return event, draw(st.integers(0, 2**41))


@settings(max_examples=200, deadline=None)
@given(valid_events(), st.sampled_from([None, "application/json", "application/x+json"]))
def test_any_valid_event_decodes_the_same_in_both_modes(
    drawn: tuple[dict[str, Any], int], content_type: str | None
) -> None:
    event, timestamp_ms = drawn
    structured = dataclasses.replace(f.record(event), timestamp_ms=timestamp_ms)
    assert decoded(binary(event, content_type=content_type, timestamp_ms=timestamp_ms)) == (
        decoded(structured)
    )
