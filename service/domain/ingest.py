"""Turning one raw Kafka record into a valid `Event` or a `Rejection` (contract 10).

Pure functions: no Kafka client and no MongoDB here, so every rule about bad input is tested
without servers. Whatever passes these checks can be stored by MongoDB as it is, which is what
keeps one bad value from stalling a partition.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from service.domain.events import DATA_MODELS, CloudEventEnvelope, Event, EventType

MAX_NESTING = 64  # BSON allows 100 levels; the stored documents add a few of their own.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


@dataclass(frozen=True, slots=True)
class RawRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


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
        value = record.value or b""
        text = _text_or_none(value)
        data["value"] = text
        if text is None:
            data["value_base64"] = base64.b64encode(value).decode("ascii")
        return data


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
        raise Reject("empty_value", "the record has no value; expected one CloudEvent as JSON")
    if len(value) > max_event_bytes:
        raise Reject(
            "too_large",
            f"the value is {len(value)} bytes, over MAX_EVENT_BYTES={max_event_bytes}",
        )
    try:
        value.decode("utf-8")
    except UnicodeDecodeError as error:
        raise Reject("not_utf8", f"the value is not UTF-8 text: {error}") from None
    try:
        document = json.loads(
            value, parse_int=_int64, parse_float=_finite, parse_constant=_no_constant
        )
    except _TooLarge as error:
        raise Reject("unstorable_value", str(error)) from None
    except ValueError as error:
        raise Reject("not_json", f"the value is not JSON: {error}") from None
    if not isinstance(document, dict):
        raise Reject("not_cloudevent", "the value is JSON but not an object; expected a CloudEvent")
    try:
        envelope = CloudEventEnvelope.model_validate(document)
    except ValidationError as error:
        raise Reject("not_cloudevent", _explain(error, "")) from None
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
    _check_storable(envelope.data, "data", 0)
    try:
        data = model.model_validate(envelope.data)
    except ValidationError as error:
        raise Reject("invalid_data", _explain(error, "data.")) from None
    _check_campaign(record, envelope, data.campaign_id)
    return Event(
        source=envelope.source, id=envelope.id, type=event_type, time=envelope.time, data=data
    )


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


def _check_storable(value: Any, path: str, depth: int) -> None:
    """Refuse what MongoDB could not store, so it is rejected here and never retried there.

    (Integers past 64 bits are refused by the parser already.)
    """
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
