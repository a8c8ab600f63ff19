"""Ingest.decode: one raw Kafka record becomes a valid Event or a Rejection (contract 10)."""

from __future__ import annotations

import base64
import dataclasses
import json
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import AwareDatetime, TypeAdapter, ValidationError

from service.domain import ingest
from service.domain.events import ArtifactGenerated, Event, EventType, Timestamp
from service.domain.ingest import MAX_NESTING, RawRecord, Rejection, decode
from tests.unit.factories import cloud_event, record

LIMIT = 1024 * 1024


def artifact_data(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "campaign_id": "c-1",
        "artifact_id": "a-1",
        "artifact_type": "copy",
        "content": {"headline": "Spring is here"},
    }
    data.update(overrides)
    return data


def artifact_event(**overrides: Any) -> dict[str, Any]:
    data = overrides.pop("data", artifact_data())
    return cloud_event(EventType.ARTIFACT_GENERATED, data, **overrides)


def decoded(raw: RawRecord, limit: int = LIMIT) -> Event:
    result = decode(raw, limit)
    assert isinstance(result, Event), result
    return result


def rejected(raw: RawRecord, reason: str, limit: int = LIMIT) -> Rejection:
    result = decode(raw, limit)
    assert isinstance(result, Rejection), f"expected {reason}, got an event: {result}"
    assert result.reason == reason, (result.reason, result.detail)
    assert result.detail
    assert result.record is raw
    return result


def stdlib_json(document: Any) -> bytes:
    """JSON bytes by the standard library, which writes integers of any size exactly (orjson
    refuses those past 64 bits, so `record` cannot build them)."""
    return json.dumps(document).encode("utf-8")


def without(document: dict[str, Any], name: str) -> dict[str, Any]:
    return {k: v for k, v in document.items() if k != name}


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"n": value}
    return value


# ---- the happy path ----------------------------------------------------------------------


def test_a_valid_event_decodes() -> None:
    event = decoded(record(artifact_event(id="e-1", source="agents/copy")))
    assert event.type is EventType.ARTIFACT_GENERATED
    assert (event.source, event.id) == ("agents/copy", "e-1")
    assert event.key == "11:agents/copye-1"  # length-prefixed: len(source), ":", source, id
    assert event.campaign_id == "c-1"
    assert isinstance(event.data, ArtifactGenerated)
    assert event.data.content == {"headline": "Spring is here"}


def test_every_consumed_type_decodes() -> None:
    datas = {
        EventType.ARTIFACT_GENERATED: artifact_data(),
        EventType.AUDIT_COMPLETED: {"campaign_id": "c-1", "version_id": "v-1", "outcome": "pass"},
        EventType.FEEDBACK_SUBMITTED: {
            "campaign_id": "c-1",
            "artifact_id": "a-1",
            "version_id": "v-1",
            "feedback_text": "shorter",
        },
        EventType.CAMPAIGN_CREATED: {"campaign_id": "c-1", "name": "Spring"},
        EventType.STATUS_CHANGED: {"campaign_id": "c-1", "status": "auditing"},
        EventType.RUN_STARTED: {"campaign_id": "c-1", "run_id": "r-1"},
        EventType.RUN_COMPLETED: {"campaign_id": "c-1", "run_id": "r-1", "status": "failed"},
        EventType.VERSION_APPROVED: {"campaign_id": "c-1", "version_id": "v-1"},
        EventType.VERSION_ARCHIVE_REQUESTED: {"campaign_id": "c-1", "version_id": "v-1"},
        EventType.DELETE_REQUESTED: {"campaign_id": "c-1"},
        EventType.RESTORE_REQUESTED: {"campaign_id": "c-1"},
    }
    for event_type, data in datas.items():
        assert decoded(record(cloud_event(event_type, data))).type is event_type


def test_unknown_extra_fields_are_kept() -> None:
    data = artifact_data(mood="sunny", scores={"x": 1}, tags=["a", "b"])
    event = decoded(record(cloud_event(EventType.ARTIFACT_GENERATED, data)))
    assert event.data.extra == {"mood": "sunny", "scores": {"x": 1}, "tags": ["a", "b"]}


def test_extra_envelope_attributes_are_accepted() -> None:
    document = artifact_event(traceparent="00-abc-def-01", datacontenttype="application/json")
    decoded(record(document))


def test_keys_with_dollar_and_dot_inside_content_are_accepted_as_is() -> None:
    content = {"$set": {"a.b": 1}, "x.y": {"$where": "1"}, "$": ["$in"]}
    data = artifact_data(content=content, **{"meta.data": {"$ref": "r"}})
    event = decoded(record(cloud_event(EventType.ARTIFACT_GENERATED, data)))
    assert isinstance(event.data, ArtifactGenerated)
    assert event.data.content == content
    assert event.data.extra == {"meta.data": {"$ref": "r"}}


def test_a_keyless_record_is_accepted() -> None:
    event = decoded(record(artifact_event(), key=None))
    assert event.campaign_id == "c-1"


def test_subject_equal_to_the_campaign_is_accepted() -> None:
    decoded(record(artifact_event(subject="c-1")))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-03-01T12:00:00Z", datetime(2025, 3, 1, 12, 0, tzinfo=UTC)),
        ("2025-03-01T14:30:00.123456+02:30", datetime(2025, 3, 1, 12, 0, 0, 123000, tzinfo=UTC)),
        ("2025-03-01T07:00:00.9999-05:00", datetime(2025, 3, 1, 12, 0, 0, 999000, tzinfo=UTC)),
    ],
)
def test_times_are_normalised_to_utc_milliseconds(text: str, expected: datetime) -> None:
    data = artifact_data(generated_at=text)
    event = decoded(record(cloud_event(EventType.ARTIFACT_GENERATED, data, time=text)))
    assert event.time == expected
    assert event.time.utcoffset() is not None and event.time.utcoffset().total_seconds() == 0
    assert event.time.microsecond % 1000 == 0
    assert isinstance(event.data, ArtifactGenerated)
    assert event.data.generated_at == expected


@pytest.mark.parametrize("text", ["9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+05:00"])
def test_a_time_past_the_years_utc_can_hold_is_refused_with_the_reason(text: str) -> None:
    """Valid RFC 3339, but out of range in UTC: refused, not a batch failing forever."""
    rejection = rejected(record(artifact_event(time=text)), "not_cloudevent")
    assert "time" in rejection.detail and "UTC" in rejection.detail
    raw = record(cloud_event(EventType.ARTIFACT_GENERATED, artifact_data(generated_at=text)))
    assert "data.generated_at" in rejected(raw, "invalid_data").detail


@given(
    moment=st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
    digits=st.integers(min_value=0, max_value=6),
    zone=st.one_of(
        st.just("Z"),
        st.tuples(
            st.sampled_from("+-"), st.integers(min_value=0, max_value=99), st.integers(0, 99)
        ).map(lambda z: f"{z[0]}{z[1]:02d}:{z[2]:02d}"),
    ),
)
def test_common_times_read_fast_as_pydantic_reads_them(
    moment: datetime, digits: int, zone: str
) -> None:
    """The common forms are read by the standard library; any other answer than pydantic's
    own reading (normalised to UTC milliseconds), or its refusal, would be a bug."""
    fraction = f".{moment.microsecond:06d}"[: digits + 1] if digits else ""
    text = moment.strftime("%Y-%m-%dT%H:%M:%S") + fraction + zone

    def answer(validate: Any) -> Any:
        try:
            return validate(text)
        except ValidationError:
            return "refused"

    def pydantic_alone(value: str) -> datetime:
        parsed = TypeAdapter(AwareDatetime).validate_python(value).astimezone(UTC)
        return parsed.replace(microsecond=parsed.microsecond // 1000 * 1000)

    fast = answer(TypeAdapter(Timestamp).validate_python)
    assert fast == answer(pydantic_alone)
    if fast != "refused":
        assert fast.tzinfo is UTC


def test_limits_at_the_edge_are_accepted() -> None:
    raw = record(artifact_event())
    decoded(raw, limit=len(raw.value or b""))
    decoded(record(cloud_event(EventType.RUN_STARTED, {"campaign_id": "c" * 128, "run_id": "r"})))
    decoded(record(artifact_event(data=artifact_data(content={"n": 2**63 - 1, "m": -(2**63)}))))
    decoded(record(artifact_event(data=artifact_data(content={"x": 1.7976931348623157e308}))))
    decoded(record(artifact_event(data=artifact_data(content=nested(MAX_NESTING - 1)))))


# ---- every rejection ------------------------------------------------------------------------


@pytest.mark.parametrize("value", [None, b""])
def test_empty_value(value: bytes | None) -> None:
    rejected(record(value, key="c-1"), "empty_value")


def test_too_large() -> None:
    raw = record(artifact_event())
    rejection = rejected(raw, "too_large", limit=len(raw.value or b"") - 1)
    assert "MAX_EVENT_BYTES" in rejection.detail


def test_not_utf8() -> None:
    rejected(record(b'{"id": "\xff\xfe"}', key="c-1"), "not_utf8")


@pytest.mark.parametrize("value", [b"{", b"not json", b'{"a": 1,}', b"[1 2]", b"{'a': 1}"])
def test_not_json(value: bytes) -> None:
    rejected(record(value, key="c-1"), "not_json")


@pytest.mark.parametrize(
    "value",
    [
        b"NaN",
        b'{"a": NaN}',
        b'{"a": Infinity}',
        b'{"a": -Infinity}',
        b'{"a": 1e400}',  # overflows to infinity
        b'{"a": -1e400}',
        b'{"a": [1, {"b": 1.5e999}]}',
    ],
)
def test_not_json_when_a_number_is_not_finite(value: bytes) -> None:
    """JSON has no NaN or Infinity; the standard parser would accept them, the hooks refuse."""
    rejected(record(value, key="c-1"), "not_json")


def test_a_non_finite_number_inside_a_cloudevent_is_not_json() -> None:
    document = artifact_event(data=artifact_data(content={"x": "PLACEHOLDER"}))
    value = stdlib_json(document).replace(b'"PLACEHOLDER"', b"1e400")
    rejection = rejected(record(value, key="c-1"), "not_json")
    assert "1e400" in rejection.detail


@pytest.mark.parametrize("value", [b"[]", b"[1, 2]", b'"text"', b"42", b"null", b"true"])
def test_not_cloudevent_when_not_an_object(value: bytes) -> None:
    rejected(record(value, key="c-1"), "not_cloudevent")


@pytest.mark.parametrize("name", ["specversion", "id", "source", "type", "data"])
def test_not_cloudevent_when_an_attribute_is_missing(name: str) -> None:
    rejection = rejected(record(without(artifact_event(), name), key="c-1"), "not_cloudevent")
    assert name in rejection.detail


def test_without_time_the_record_timestamp_is_the_event_time() -> None:
    raw = dataclasses.replace(
        record(without(artifact_event(), "time")), timestamp_ms=1_740_830_400_123
    )
    assert decoded(raw).time == datetime(2025, 3, 1, 12, 0, 0, 123000, tzinfo=UTC)


def test_time_wins_over_the_record_timestamp() -> None:
    raw = dataclasses.replace(record(artifact_event()), timestamp_ms=1)
    assert decoded(raw).time == datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("timestamp_ms", [None, -1])
def test_without_time_nor_record_timestamp_it_is_not_a_cloudevent(timestamp_ms: int | None) -> None:
    raw = dataclasses.replace(record(without(artifact_event(), "time")), timestamp_ms=timestamp_ms)
    rejection = rejected(raw, "not_cloudevent")
    assert "time" in rejection.detail


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/cloudevents+json",
        "application/vnd.acme.campaign+json",
    ],
)
def test_a_json_datacontenttype_is_accepted(content_type: str) -> None:
    decoded(record(artifact_event(datacontenttype=content_type)))


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/xml", "application/jsonx", "json", ""]
)
def test_a_datacontenttype_that_is_not_json_is_invalid_data(content_type: str) -> None:
    rejection = rejected(record(artifact_event(datacontenttype=content_type)), "invalid_data")
    assert "datacontenttype" in rejection.detail


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("specversion", "0.3"),
        ("specversion", 1.0),
        ("id", ""),
        ("source", ""),
        ("type", ""),
        ("type", ["campaign.artifact.generated"]),
        ("type", {"campaign.artifact.generated": 1}),
        ("time", "2025-03-01T12:00:00"),  # no zone
        ("time", "yesterday"),
        ("data", "a string"),
        ("data", ["a", "list"]),
        ("data", None),
    ],
)
def test_not_cloudevent_when_an_attribute_is_wrong(name: str, value: Any) -> None:
    rejected(record(artifact_event(**{name: value}), key="c-1"), "not_cloudevent")


@pytest.mark.parametrize(
    "event_type",
    [
        "campaign.snapshot.updated",
        "campaign.event.rejected",
        "campaign.unknown",
        "Campaign.created",
    ],
)
def test_unknown_type(event_type: str) -> None:
    rejected(record(cloud_event(event_type, {"campaign_id": "c-1"})), "unknown_type")


@pytest.mark.parametrize(
    ("event_type", "data"),
    [
        (EventType.ARTIFACT_GENERATED, artifact_data(artifact_id="a/1")),
        (EventType.ARTIFACT_GENERATED, artifact_data(artifact_id="a" * 129)),
        (EventType.ARTIFACT_GENERATED, artifact_data(artifact_id="")),
        (EventType.ARTIFACT_GENERATED, artifact_data(artifact_id="a-1\n")),
        (EventType.ARTIFACT_GENERATED, artifact_data(version_id="v 1")),
        (EventType.ARTIFACT_GENERATED, artifact_data(artifact_type="Copy")),
        (EventType.ARTIFACT_GENERATED, artifact_data(artifact_type="short-copy")),
        (EventType.ARTIFACT_GENERATED, artifact_data(artifact_type="copy_")),
        (EventType.ARTIFACT_GENERATED, artifact_data(content="text")),
        (EventType.ARTIFACT_GENERATED, without(artifact_data(), "content")),
        (EventType.ARTIFACT_GENERATED, artifact_data(generated_at="2025-03-01T12:00:00")),
        (
            EventType.FEEDBACK_SUBMITTED,
            {"campaign_id": "c-1", "artifact_id": "a-1", "version_id": "v-1", "feedback_text": ""},
        ),
        (
            EventType.AUDIT_COMPLETED,
            {
                "campaign_id": "c-1",
                "version_id": "v-1",
                "outcome": "pass",
                "category_scores": {"tone": {"score": 101}},
            },
        ),
        (
            EventType.AUDIT_COMPLETED,
            {
                "campaign_id": "c-1",
                "version_id": "v-1",
                "outcome": "pass",
                "category_scores": {"tone": {"score": -1}},
            },
        ),
        (
            EventType.AUDIT_COMPLETED,
            {"campaign_id": "c-1", "version_id": "v-1", "outcome": "passed"},
        ),
        (EventType.STATUS_CHANGED, {"campaign_id": "c-1", "status": "archived"}),
        (EventType.RUN_COMPLETED, {"campaign_id": "c-1", "run_id": "r-1", "status": "running"}),
        (
            EventType.RUN_STARTED,
            {"campaign_id": "c-1", "run_id": "r-1", "execution_mode": "chaotic"},
        ),
        (EventType.CAMPAIGN_CREATED, {"campaign_id": "c-1", "name": ""}),
        (EventType.CAMPAIGN_CREATED, {"campaign_id": "c-1"}),
        (EventType.VERSION_APPROVED, {"campaign_id": "c-1"}),
    ],
)
def test_invalid_data(event_type: str, data: dict[str, Any]) -> None:
    rejection = rejected(record(cloud_event(event_type, data), key="c-1"), "invalid_data")
    assert "data." in rejection.detail


@pytest.mark.parametrize("campaign_id", ["c/1", "c" * 129, "", "c 1", None, 7])
def test_invalid_campaign_id(campaign_id: Any) -> None:
    data = {"campaign_id": campaign_id}
    rejected(record(cloud_event(EventType.DELETE_REQUESTED, data), key=None), "invalid_data")


@pytest.mark.parametrize(
    "content",
    [
        {"big": 2**63},
        {"big": 2**64 - 1},
        {"big": 2**64},  # orjson read this as a float, silently losing digits
        {"big": 10**30},
        {"small": -(2**63) - 1},
        {"small": -(10**30)},
        {"deep": [{"list": [2**63]}]},
        {"bad\x00key": 1},
        {"inner": {"k\x00": "v"}},
        nested(MAX_NESTING + 1),
    ],
)
def test_unstorable_value(content: dict[str, Any]) -> None:
    raw = record(stdlib_json(artifact_event(data=artifact_data(content=content))), key="c-1")
    rejected(raw, "unstorable_value")


@pytest.mark.parametrize("number", [2**63, 2**64, -(2**63) - 1])
def test_an_integer_past_64_bits_is_refused_with_its_digits(number: int) -> None:
    raw = record(stdlib_json(artifact_event(data=artifact_data(content={"n": number}))), key="c-1")
    rejection = rejected(raw, "unstorable_value")
    assert str(number) in rejection.detail
    assert "64 bits" in rejection.detail


def test_unstorable_value_in_an_extra_field() -> None:
    raw = record(artifact_event(data=artifact_data(extra_field={"n": 2**63})))
    rejected(raw, "unstorable_value")


def test_unstorable_value_outside_data() -> None:
    """The parser refuses such integers wherever they are, even in an envelope extension."""
    raw = record(stdlib_json(artifact_event(sequence=2**64)), key="c-1")
    rejected(raw, "unstorable_value")


def test_campaign_mismatch_with_the_kafka_key() -> None:
    rejection = rejected(record(artifact_event(), key="c-2"), "campaign_mismatch")
    assert "c-2" in rejection.detail


def test_campaign_mismatch_with_a_key_that_is_not_utf8() -> None:
    rejected(record(artifact_event(), key=b"\xff"), "campaign_mismatch")


def test_campaign_mismatch_with_the_subject() -> None:
    rejection = rejected(record(artifact_event(subject="c-2")), "campaign_mismatch")
    assert "subject" in rejection.detail


# ---- the dead letter's data -----------------------------------------------------------------


def test_rejection_data_carries_the_utf8_value_as_text() -> None:
    raw = RawRecord("campaign.lifecycle", 2, 41, b"c-1", b"not json")
    data = rejected(raw, "not_json").as_data()
    assert data == {
        "reason": "not_json",
        "detail": data["detail"],
        "topic": "campaign.lifecycle",
        "partition": 2,
        "offset": 41,
        "key": "c-1",
        "value": "not json",
        "headers": [],
    }
    assert "value_base64" not in data
    assert "key_base64" not in data


def test_rejection_data_carries_a_non_utf8_value_as_base64() -> None:
    value = b"\xff\xfe\x00binary"
    raw = RawRecord("campaign.feedback", 0, 7, b"\xfe", value)
    data = rejected(raw, "not_utf8").as_data()
    assert data["value_base64"] == base64.b64encode(value).decode("ascii")
    assert base64.b64decode(data["value_base64"]) == value
    assert data["value"] is None  # the text form is absent: the bytes are in value_base64
    assert data["key"] is None  # a key that is not UTF-8 cannot be shown as text
    assert base64.b64decode(data["key_base64"]) == b"\xfe"  # but is kept, for replay


def test_rejection_data_of_an_empty_value() -> None:
    data = rejected(RawRecord("t", 0, 0, None, None), "empty_value").as_data()
    assert data["key"] is None
    assert "key_base64" not in data  # keyless: nothing to keep
    assert data["value"] == ""


def test_rejection_data_is_json() -> None:
    raw = record(artifact_event(), key="c-9")
    data = rejected(raw, "campaign_mismatch").as_data()
    assert orjson.loads(orjson.dumps(data)) == data
    assert orjson.loads(data["value"]) == orjson.loads(raw.value or b"")


@pytest.mark.parametrize(
    "value",
    [1740830400, 1740830400.5, 0, -1, True, None, ["2025-03-01T12:00:00Z"], {"t": 1}],
)
def test_a_time_that_is_not_a_string_is_not_a_cloudevent(value: Any) -> None:
    """`time` must be RFC 3339 text; pydantic alone would read a number as Unix seconds."""
    document = {**artifact_event(), "time": value}  # not through the factory: it fills in None
    rejection = rejected(record(document), "not_cloudevent")
    assert "time" in rejection.detail


@pytest.mark.parametrize("value", [1740830400, "2025-03-01"])
def test_a_data_time_that_is_not_rfc3339_is_invalid_data(value: Any) -> None:
    raw = record(cloud_event(EventType.ARTIFACT_GENERATED, artifact_data(generated_at=value)))
    rejection = rejected(raw, "invalid_data")
    assert "data.generated_at" in rejection.detail


@pytest.mark.parametrize(
    "value", ["1740830400", "1740830400.5", "2025-03-01T12:00Z", "2025-03-01T12:00:00+0100"]
)
def test_a_numeric_string_time_is_not_a_cloudevent(value: str) -> None:
    rejected(record(artifact_event(time=value)), "not_cloudevent")


_JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=12,
)


@given(document=_JSON_VALUES)
def test_the_fast_parser_answers_as_the_standard_one(document: Any) -> None:
    """orjson reads the common case; what it may round or refuse goes to the standard
    parser, so the answer is the standard parser's in every case."""
    value = stdlib_json(document)

    def answer(parse: Any) -> Any:
        try:
            return ("parsed", parse(value))
        except ingest.Reject as reject:
            return ("refused", reject.reason, reject.detail)

    fast, strict = answer(ingest._parse_json), answer(ingest._parse_json_strictly)
    assert fast == strict
    if fast[0] == "parsed":  # equal, and of the same types (1 and 1.0 compare equal)
        assert stdlib_json(fast[1]) == stdlib_json(strict[1])


def _storable_by_definition(value: Any, depth: int) -> bool:
    """What `_storable` must answer, written plainly: nothing deeper than MAX_NESTING, no
    field name with NUL."""
    if depth > MAX_NESTING:
        return False
    if isinstance(value, dict):
        return all(
            "\x00" not in key and _storable_by_definition(item, depth + 1)
            for key, item in value.items()
        )
    if isinstance(value, list):
        return all(_storable_by_definition(item, depth + 1) for item in value)
    return True


def _nested(leaf: Any, depth: int, key: str) -> Any:
    for level in range(depth):
        leaf = {key: leaf} if level % 2 else [leaf]
    return leaf


@given(
    value=_JSON_VALUES,
    depth=st.integers(min_value=MAX_NESTING - 3, max_value=MAX_NESTING + 1),
    key=st.sampled_from(["k", "a\x00b"]),
)
def test_the_storability_walk_answers_as_its_definition(value: Any, depth: int, key: str) -> None:
    """Near the nesting limit and with NUL in names, where a shortcut would go wrong."""
    for document in (value, _nested(value, depth, key), {key: value}):
        assert ingest._storable(document, 0) == _storable_by_definition(document, 0)
        assert ingest._storable(document, 1) == _storable_by_definition(document, 1)
