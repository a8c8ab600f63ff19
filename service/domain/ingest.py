"""Turning one raw Kafka record into a valid `Event` or a `Rejection` (contract 10).

Pure functions: no Kafka client and no MongoDB here, so every rule about bad input is tested
without servers. Whatever passes these checks can be stored by MongoDB as it is, which is what
keeps one bad value from stalling a partition.

Both content modes of the CloudEvents Kafka protocol binding are read (the contract's
"Transport"): a record with a `ce_specversion` header is binary mode (attributes in `ce_*`
headers, `content-type` is `datacontenttype`, the value is `data`); any other record is
structured mode (the value is the whole event as JSON). Both become the same envelope and go
through the same checks, so every rule holds alike for both.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from pydantic import ValidationError

from service.domain.events import (
    DATA_MODELS,
    TYPED_ENVELOPES,
    CloudEventEnvelope,
    Event,
    EventData,
    EventType,
)

MAX_NESTING = 64  # BSON allows 100 levels; the stored documents add a few of their own.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

# The CloudEvents Kafka protocol binding's header names.
ATTRIBUTE_PREFIX = "ce_"
SPECVERSION_HEADER = "ce_specversion"
CONTENT_TYPE_HEADER = "content-type"

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Headers = tuple[tuple[str, bytes], ...]


# Not frozen, though never changed after it is made: a frozen dataclass is built four times
# slower (each field through object.__setattr__), and one is built per record. The same holds
# for `Event`, `Inbound` and `OutboxEntry`.
@dataclass(slots=True)
class RawRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    # The record's headers as sent (the bytes, not a lossy decoding), in order.
    headers: Headers = ()
    # The record's Kafka timestamp: the event's time when it has no `time` attribute.
    timestamp_ms: int | None = None

    @property
    def binary_mode(self) -> bool:
        return any(name.lower() == SPECVERSION_HEADER for name, _ in self.headers)


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: str
    detail: str
    record: RawRecord

    def as_data(self) -> dict[str, Any]:
        """The `data` of the `campaign.event.rejected` event."""
        record = self.record
        data: dict[str, Any] = {
            "reason": self.reason,
            "detail": self.detail,
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "key": _text_or_none(record.key),
        }
        if record.key is not None and data["key"] is None:
            data["key_base64"] = base64.b64encode(record.key).decode("ascii")
        value = record.value or b""
        text = _text_or_none(value)
        data["value"] = text
        if text is None:
            data["value_base64"] = base64.b64encode(value).decode("ascii")
        data["headers"] = [_header_data(name, raw) for name, raw in record.headers]
        return data


def _header_data(name: str, raw: bytes) -> dict[str, str]:
    text = _text_or_none(raw)
    if text is None:
        return {"name": name, "value_base64": base64.b64encode(raw).decode("ascii")}
    return {"name": name, "value": text}


def record_document(record: RawRecord) -> dict[str, Any]:
    """A record as a plain document (bytes kept as bytes), to be stored and read back as is."""
    return {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "key": record.key,
        "value": record.value,
        "headers": [[name, value] for name, value in record.headers],
        "timestamp_ms": record.timestamp_ms,
    }


def record_from_document(document: dict[str, Any]) -> RawRecord:
    """The inverse of `record_document` (documents stored before headers existed read too)."""
    key, value = document.get("key"), document.get("value")
    return RawRecord(
        topic=document["topic"],
        partition=document["partition"],
        offset=document["offset"],
        key=bytes(key) if key is not None else None,
        value=bytes(value) if value is not None else None,
        headers=tuple((str(name), bytes(raw)) for name, raw in document.get("headers") or ()),
        timestamp_ms=document.get("timestamp_ms"),
    )


class Reject(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def decode(record: RawRecord, max_event_bytes: int) -> Event | Rejection:
    try:
        return _decode(record, max_event_bytes)
    except Reject as reject:
        return Rejection(reject.reason, reject.detail, record)


def _decode(record: RawRecord, max_event_bytes: int) -> Event:
    value = record.value
    if value is None or not value:
        expected = "the event's data" if record.binary_mode else "one CloudEvent"
        raise Reject("empty_value", f"the record has no value; expected {expected} as JSON")
    if len(value) > max_event_bytes:
        raise Reject(
            "too_large",
            f"the value is {len(value)} bytes, over MAX_EVENT_BYTES={max_event_bytes}",
        )
    attributes = _binary_attributes(record) if record.binary_mode else None
    if attributes is not None:
        # Checked before the value is parsed: a non-JSON payload is refused for its type.
        _check_content_type(attributes.get("datacontenttype"))
        attributes["data"] = _parse_json(value)
        document = attributes
    else:
        document = _parse_json(value)
        if not isinstance(document, dict):
            raise Reject(
                "not_cloudevent", "the value is JSON but not an object; expected a CloudEvent"
            )
    envelope = _envelope(document)
    if attributes is None:
        _check_content_type(envelope.datacontenttype)
    try:
        event_type = EventType(envelope.type)
    except ValueError:
        known = ", ".join(sorted(t.value for t in DATA_MODELS))
        raise Reject(
            "unknown_type", f"type {envelope.type!r} is not consumed here; known types: {known}"
        ) from None
    model = DATA_MODELS.get(event_type)
    if model is None:
        raise Reject("unknown_type", f"type {envelope.type!r} is published, never consumed")
    _check_storable(document["data"], "data", 0)
    data: EventData
    if isinstance(envelope.data, model):
        data = envelope.data  # validated with the envelope
    else:
        try:
            data = model.model_validate(envelope.data)
        except ValidationError as error:
            raise Reject("invalid_data", _explain(error, "data.")) from None
    _check_campaign(record, envelope, data.campaign_id)
    event = Event(
        source=envelope.source,
        id=envelope.id,
        type=event_type,
        time=envelope.time or _record_time(record),
        data=data,
    )
    if envelope.__pydantic_extra__:  # extension attributes: perhaps a trace context
        _trace_context(event, envelope.__pydantic_extra__)
    return event


def _trace_context(event: Event, extra: dict[str, Any]) -> None:
    """The Distributed Tracing extension's attributes, when they are strings."""
    traceparent, tracestate = extra.get("traceparent"), extra.get("tracestate")
    if isinstance(traceparent, str):
        event.traceparent = traceparent
        event.tracestate = tracestate if isinstance(tracestate, str) else None


def _envelope(document: dict[str, Any]) -> CloudEventEnvelope:
    """The envelope, with `data` typed when the whole event validates in one call (the
    common case, a sixth faster than two); otherwise the envelope alone, so that an error
    is told as before: in the envelope first, in `data` after the other checks."""
    event_type = document.get("type")
    typed = TYPED_ENVELOPES.get(event_type) if isinstance(event_type, str) else None
    if typed is not None:
        try:
            return typed.model_validate(document)
        except ValidationError:
            pass
    try:
        return CloudEventEnvelope.model_validate(document)
    except ValidationError as error:
        raise Reject("not_cloudevent", _explain(error, "")) from None


def _parse_json(value: bytes) -> Any:
    # orjson first, four times faster than the standard parser. It turns integers past 64
    # bits into floats and refuses what the standard parser explains better, so when it
    # refuses the value or a number may have been rounded, the standard parser decides.
    try:
        document = orjson.loads(value)
    except orjson.JSONDecodeError:
        pass
    else:
        if _exact((document,)):
            return document
    return _parse_json_strictly(value)


def _exact(values: Iterable[Any]) -> bool:
    """No number among `values`, or inside them, that orjson may have rounded: every integer
    fits in 64 bits and no float is large enough to have been one that did not. (Leaves are
    looked at in the loop, not in a call each: it runs on every event.)"""
    for item in values:
        kind = type(item)
        if kind is str:
            continue
        if kind is dict:
            if not _exact(item.values()):
                return False
        elif kind is list:
            if not _exact(item):
                return False
        elif kind is int:
            if not INT64_MIN <= item <= INT64_MAX:
                return False
        elif kind is float and not -_ROUNDED < item < _ROUNDED:
            return False
    return True


_ROUNDED = float(2**63)


def _parse_json_strictly(value: bytes) -> Any:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError as error:
        raise Reject("not_utf8", f"the value is not UTF-8 text: {error}") from None
    try:
        return json.loads(value, parse_int=_int64, parse_float=_finite, parse_constant=_no_constant)
    except _TooLarge as error:
        raise Reject("unstorable_value", str(error)) from None
    except ValueError as error:
        raise Reject("not_json", f"the value is not JSON: {error}") from None


def _binary_attributes(record: RawRecord) -> dict[str, Any]:
    """The context attributes of a binary-mode record, from its `ce_*` and `content-type`."""
    attributes: dict[str, Any] = {}
    for raw_name, raw_value in record.headers:
        name = raw_name.lower()
        if name == CONTENT_TYPE_HEADER:
            attribute = "datacontenttype"
        elif name.startswith(ATTRIBUTE_PREFIX) and len(name) > len(ATTRIBUTE_PREFIX):
            attribute = name[len(ATTRIBUTE_PREFIX) :]
        else:
            continue  # not a CloudEvents header: tracing, replay provenance and the like
        try:
            text = raw_value.decode("utf-8")
        except UnicodeDecodeError:
            raise Reject("not_cloudevent", f"header {raw_name!r} is not UTF-8 text") from None
        if attribute in attributes:
            # Two values for one attribute: neither can be trusted to be the one meant.
            raise Reject("not_cloudevent", f"header {raw_name!r} appears more than once")
        attributes[attribute] = text
    if attributes.get("specversion") != "1.0":
        raise Reject(
            "not_cloudevent",
            f"header {SPECVERSION_HEADER} is {attributes.get('specversion')!r}; expected '1.0'",
        )
    return attributes


def _check_content_type(content_type: str | None) -> None:
    """`datacontenttype`, when set, must say JSON: application/json or a `+json` suffix."""
    if content_type is None:
        return
    media_type = content_type.split(";", 1)[0].strip().lower()
    kind, _, subtype = media_type.partition("/")
    if media_type == "application/json" or (kind and subtype.endswith("+json")):
        return
    raise Reject(
        "invalid_data",
        f"datacontenttype {content_type!r} is not JSON; expected application/json "
        "or a +json media type",
    )


def _record_time(record: RawRecord) -> datetime:
    # Kafka gives -1 when a record carries no timestamp (pre-0.10 message format).
    if record.timestamp_ms is None or record.timestamp_ms < 0:
        raise Reject("not_cloudevent", "time: absent, and the record has no timestamp to use")
    return EPOCH + timedelta(milliseconds=record.timestamp_ms)


class _TooLarge(ValueError):
    pass


def _int64(text: str) -> int:
    # The standard parser, not orjson: orjson turns integers past 64 bits into floats,
    # silently losing digits; here they are refused with the reason.
    value = int(text)
    if not INT64_MIN <= value <= INT64_MAX:
        msg = f"the integer {text[:40]} does not fit in 64 bits, as MongoDB needs"
        raise _TooLarge(msg)
    return value


def _finite(text: str) -> float:
    value = float(text)
    if value in {float("inf"), float("-inf")}:
        msg = f"{text[:40]} is out of range for a JSON number"
        raise ValueError(msg)
    return value


def _no_constant(text: str) -> Any:
    msg = f"{text} is not a JSON number"
    raise ValueError(msg)


def _check_campaign(record: RawRecord, envelope: CloudEventEnvelope, campaign_id: str) -> None:
    if record.key is not None:
        key = _text_or_none(record.key)
        if key != campaign_id:
            raise Reject(
                "campaign_mismatch",
                f"the Kafka key {key!r} is not data.campaign_id {campaign_id!r}; "
                "the key must be the campaign id",
            )
    if envelope.subject is not None and envelope.subject != campaign_id:
        raise Reject(
            "campaign_mismatch",
            f"subject {envelope.subject!r} is not data.campaign_id {campaign_id!r}",
        )


def _storable(value: Any, depth: int) -> bool:
    """`_check_storable` without building the paths it names (it runs on every event)."""
    kind = type(value)
    if kind is not dict and kind is not list:
        return depth <= MAX_NESTING
    if depth >= MAX_NESTING and (depth > MAX_NESTING or value):
        return False  # it, or what it holds, nests deeper than MAX_NESTING
    items: Iterable[Any] = value
    if kind is dict:
        for key in value:
            if "\x00" in key:
                return False
        items = value.values()
    for item in items:
        inner = type(item)
        if (inner is dict or inner is list) and not _storable(item, depth + 1):
            return False
    return True


def _check_storable(value: Any, path: str, depth: int) -> None:
    """Refuse what MongoDB could not store, so it is rejected here and never retried there.

    (Integers past 64 bits are refused by the parser already.)
    """
    if _storable(value, depth):
        return
    _explain_unstorable(value, path, depth)


def _explain_unstorable(value: Any, path: str, depth: int) -> None:
    if depth > MAX_NESTING:
        raise Reject("unstorable_value", f"{path} nests deeper than {MAX_NESTING} levels")
    if isinstance(value, dict):
        for key, item in value.items():
            if "\x00" in key:
                raise Reject("unstorable_value", f"field name {key!r} in {path} contains NUL")
            _check_storable(item, f"{path}.{key}", depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_storable(item, f"{path}[{index}]", depth + 1)


def _explain(error: ValidationError, prefix: str) -> str:
    parts = []
    for item in error.errors(include_url=False)[:5]:
        where = (
            prefix + ".".join(str(p) for p in item["loc"]) if item["loc"] else prefix.rstrip(".")
        )
        parts.append(f"{where or 'event'}: {item['msg']}")
    more = error.error_count() - len(parts)
    if more > 0:
        parts.append(f"and {more} more")
    return "; ".join(parts)


def _text_or_none(raw: bytes | None) -> str | None:
    if raw is None:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
