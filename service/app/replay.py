"""Dead letters as an operator sees them: which to choose, and what a replay sends.

A dead letter (`campaign.event.rejected`) keeps the rejected record's topic, partition,
offset, key, value and headers. Replaying it sends that key, value and
those headers back to the original topic, plus one provenance header naming the dead letter,
so the ledger decides again; its idempotence makes a second replay change nothing.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

REPLAYED_FROM = "campaign-ledger-replayed-from"


class NotReplayable(ValueError):
    """The dead letter lacks what a replay needs (its topic or its value)."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One record of the dead-letter topic: where it sits, when it was made, its `data`."""

    topic: str
    partition: int
    offset: int
    time: datetime | None
    data: dict[str, Any]

    @property
    def coordinates(self) -> str:
        return f"{self.topic}:{self.partition}:{self.offset}"

    @property
    def reason(self) -> str:
        return str(self.data.get("reason", ""))

    @property
    def original_topic(self) -> str | None:
        topic = self.data.get("topic")
        return topic if isinstance(topic, str) and topic else None

    def value(self) -> bytes:
        value = _bytes(self.data, "value")
        if value is None:
            raise NotReplayable("the dead letter keeps no value")
        return value

    def key(self) -> bytes | None:
        """The original key bytes (`key`, or `key_base64` when they were not UTF-8)."""
        return _bytes(self.data, "key")

    def campaign_id(self) -> str | None:
        """The key, or else `data.campaign_id` of the original value when it is JSON."""
        if isinstance(key := self.data.get("key"), str):
            return key
        try:
            data = orjson.loads(self.value()).get("data")
        except (orjson.JSONDecodeError, NotReplayable, AttributeError):
            return None
        found = data.get("campaign_id") if isinstance(data, dict) else None
        return found if isinstance(found, str) else None

    def listing(self) -> dict[str, Any]:
        """What `dead-letters list` prints: the dead letter's place and time, then its data."""
        time = self.time.isoformat().replace("+00:00", "Z") if self.time else None
        return {"dead_letter": self.coordinates, "time": time, **self.data}


def parse_dead_letter(
    topic: str, partition: int, offset: int, value: bytes | None
) -> DeadLetter | None:
    """A dead-letter record as a DeadLetter; None if it is not one (never written by us)."""
    try:
        event = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return None
    if not isinstance(event, dict) or not isinstance(data := event.get("data"), dict):
        return None
    time = None
    if isinstance(raw_time := event.get("time"), str):
        try:
            time = datetime.fromisoformat(raw_time)
        except ValueError:
            time = None
    return DeadLetter(topic, partition, offset, time, data)


@dataclass(frozen=True, slots=True)
class Selection:
    """Which dead letters an operator means; an empty field matches everything."""

    reasons: frozenset[str] = frozenset()
    since: datetime | None = None
    topics: frozenset[str] = frozenset()
    campaigns: frozenset[str] = frozenset()

    def matches(self, letter: DeadLetter) -> bool:
        if self.reasons and letter.reason not in self.reasons:
            return False
        if self.since is not None and (letter.time is None or letter.time < self.since):
            return False
        if self.topics and letter.original_topic not in self.topics:
            return False
        return not self.campaigns or letter.campaign_id() in self.campaigns


@dataclass(frozen=True, slots=True)
class Replay:
    """A record to send again: the original key, value and headers, plus provenance."""

    replayed_from: str
    reason: str
    topic: str
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = field(default=())

    def describe(self, action: str) -> dict[str, Any]:
        return {
            "action": action,
            "dead_letter": self.replayed_from,
            "reason": self.reason,
            "topic": self.topic,
            "key": self.key.decode("utf-8", "replace") if self.key is not None else None,
            "bytes": len(self.value),
            "headers": [name for name, _ in self.headers],
        }


def replay_of(letter: DeadLetter) -> Replay:
    """What replaying this dead letter sends; NotReplayable when it cannot be rebuilt.

    Dead letters written before headers were kept have no `headers`: the record goes back
    without them (a binary-mode CloudEvent then cannot be read again; its dead letter says so).
    A provenance header from an earlier replay is replaced, so exactly one names the latest.
    """
    topic = letter.original_topic
    if topic is None:
        raise NotReplayable("the dead letter names no original topic")
    headers = [h for h in _headers(letter.data.get("headers")) if h[0] != REPLAYED_FROM]
    headers.append((REPLAYED_FROM, letter.coordinates.encode("utf-8")))
    return Replay(
        replayed_from=letter.coordinates,
        reason=letter.reason,
        topic=topic,
        key=letter.key(),
        value=letter.value(),
        headers=tuple(headers),
    )


def _headers(raw: Any) -> Iterable[tuple[str, bytes]]:
    if not isinstance(raw, list):
        return
    for item in raw:
        if not isinstance(item, dict) or not isinstance(name := item.get("name"), str):
            raise NotReplayable(f"a header is not {{name, value|value_base64}}: {item!r}")
        if (value := _bytes(item, "value")) is not None:
            yield name, value
        else:
            raise NotReplayable(f"header {name} has no value")


def _bytes(fields: dict[str, Any], name: str) -> bytes | None:
    """`name` as text, or `name_base64` when the original bytes were not UTF-8; None if absent."""
    if isinstance(encoded := fields.get(f"{name}_base64"), str):
        try:
            return base64.b64decode(encoded, validate=True)
        except binascii.Error as error:
            raise NotReplayable(f"{name}_base64 is not base64: {error}") from error
    text = fields.get(name)
    return text.encode("utf-8") if isinstance(text, str) else None
