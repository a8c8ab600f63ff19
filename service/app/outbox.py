"""The transactional outbox: what a batch publishes, stored with the change that caused it.

An entry is made inside the batch's transaction (a snapshot revision, a dead letter the rules
decided) and published to Kafka after the commit. A crash between the two leaves entries
that may never have gone out; the published mark says which ones did:

- every batch is stamped with this processor's `writer` name (new at each start) and its
  batch number, and its entries are stored with that stamp;
- after a batch's publication the store notes "writer W published up to batch B" (one small
  write, at most once per MARK_INTERVAL_SECONDS, and at once before a rebalance or a stop);
- an entry stored past its writer's mark is a leftover: the next batch that loads it
  publishes it again, first (at least once; a consumer drops a revision it has seen by its
  deterministic id).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import orjson
import structlog
from pymongo.errors import PyMongoError

from service.app import tracing
from service.domain.events import EventType
from service.domain.ingest import Rejection
from service.domain.ledger import SemanticRejection
from service.domain.state import iso

log = structlog.get_logger(__name__)

SOURCE = "urn:campaign-ledger"
# How often, at most, the published mark is written while batches run. The mark only spares
# a later owner of the same documents from publishing their entries again (this instance
# knows what it published): after a crash, up to this much is published once more. One
# write per batch cost a few ms of database time per small batch.
MARK_INTERVAL_SECONDS = 1.0
# The batch of stored entries of unknown origin: never known to be published.
UNKNOWN = 2**62


@dataclass(frozen=True, slots=True)
class Stamp:
    """Who stored outbox entries: a processor (`writer`, new at each start) and its batch."""

    writer: str
    batch: int


@dataclass(slots=True)
class OutboxEntry:
    """A message stored with the change that caused it, published after the commit (never
    changed after it is made; not frozen, for speed: see `RawRecord`).

    `kind` is "snapshot" (ordered by `revision` within a campaign) or "dead_letter" (a
    refusal decided by the rules, which a redelivery would not repeat: the event is marked).
    `value` is the event as published (structured CloudEvent JSON), serialized once: the
    same bytes are stored and sent.
    """

    id: str
    campaign_id: str
    kind: str
    revision: int
    key: str | None
    value: bytes
    chunk: str = ""  # the stored outbox document holding it, once stored


class Publisher(Protocol):
    """Where outbox entries go: Kafka in production (`service.adapters.kafka.publisher`)."""

    async def publish(self, entries: Sequence[OutboxEntry]) -> None:
        """Send each entry to its topic, keyed, in order; return once all are acknowledged."""


# ---- the entries ---------------------------------------------------------------------------


def snapshot_event(snapshot: dict[str, Any], now: datetime) -> dict[str, Any]:
    campaign_id = snapshot["campaign_id"]
    return {
        "specversion": "1.0",
        # deterministic, so a consumer can drop a revision published twice after a crash
        "id": f"snapshot:{campaign_id}:{snapshot['revision']}",
        "source": SOURCE,
        "type": EventType.SNAPSHOT_UPDATED.value,
        "time": iso(now),
        "subject": campaign_id,
        "datacontenttype": "application/json",
        **tracing.OUTBOUND.get(),  # the batch span's traceparent, when tracing is on
        "data": snapshot,
    }


def rejection_event(rejection: Rejection, now: datetime) -> dict[str, Any]:
    record = rejection.record
    return {
        "specversion": "1.0",
        # the record's coordinates: the same bad record rejected twice has one id
        "id": f"rejected:{record.topic}:{record.partition}:{record.offset}",
        "source": SOURCE,
        "type": EventType.EVENT_REJECTED.value,
        "time": iso(now),
        "datacontenttype": "application/json",
        **tracing.trace_attributes(rejection),
        "data": rejection.as_data(),
    }


def dead_letter(rejection: Rejection, now: datetime, campaign_id: str = "") -> OutboxEntry:
    data = rejection.as_data()
    return OutboxEntry(
        id=f"{campaign_id}:dead-letter:{data['topic']}:{data['partition']}:{data['offset']}",
        campaign_id=campaign_id,
        kind="dead_letter",
        revision=0,
        key=data["key"],
        value=orjson.dumps(rejection_event(rejection, now)),
    )


def snapshot_entry(snapshot: dict[str, Any], now: datetime) -> OutboxEntry:
    campaign_id = snapshot["campaign_id"]
    return OutboxEntry(
        id=f"{campaign_id}:{snapshot['revision']:012d}",
        campaign_id=campaign_id,
        kind="snapshot",
        revision=snapshot["revision"],
        key=campaign_id,
        value=orjson.dumps(snapshot_event(snapshot, now)),
    )


def semantic_dead_letter(item: SemanticRejection, now: datetime) -> OutboxEntry:
    rejection = Rejection(item.reason, item.detail, item.inbound.record)
    return dead_letter(rejection, now, item.inbound.event.campaign_id)


# ---- the published mark ---------------------------------------------------------------------


class StoredEntries(Protocol):
    """The outbox entries a loaded campaign document holds, and who stored them."""

    writer: str
    batch: int

    @property
    def entries(self) -> list[OutboxEntry]: ...


class PublishedMarks:
    """This processor's stamps and what it knows to be published.

    `write_mark` stores "writer W published up to batch B"; `read_marks` reads other
    writers' marks. Both are the store's (plain driver calls).
    """

    def __init__(
        self,
        writer: str,
        write_mark: Callable[[Stamp, datetime], Awaitable[None]],
    ) -> None:
        self.writer = writer
        self._write_mark = write_mark
        self.batches = 0  # the number of the last batch begun
        self.published = 0  # every entry of this writer up to this batch is published
        self._marking: asyncio.Future[None] | None = None  # the mark being written (`settle`)
        self._unmarked: tuple[Stamp, datetime] | None = None  # published, mark not written
        self._marked_at = float("-inf")  # monotonic time the last write began

    def next_stamp(self) -> Stamp:
        self.batches += 1
        return Stamp(self.writer, self.batches)

    def published_up_to(self, stamp: Stamp, now: datetime, *, stored_any: bool) -> None:
        """The batch of `stamp` is published; note it, and begin writing the mark when it is
        due. Not awaited here: the caller commits the offsets meanwhile (see `settle`)."""
        if stored_any:
            self._unmarked = (stamp, now)
            if time.monotonic() - self._marked_at >= MARK_INTERVAL_SECONDS:
                self._mark(stamp, now)
        self.published = stamp.batch

    async def flush(self) -> None:
        """Write the mark now, up to the last batch published: before a rebalance hands the
        campaigns to another instance, and before a stop."""
        await self.settle()
        if self._unmarked is not None:
            self._mark(*self._unmarked)
            await self.settle()

    def _mark(self, stamp: Stamp, now: datetime) -> None:
        self._unmarked = None
        self._marked_at = time.monotonic()
        self._marking = asyncio.ensure_future(self._write_mark(stamp, now))

    async def settle(self) -> None:
        """Wait for the mark being written, if one is.

        The mark only spares a later reader of the same documents (this instance restarted,
        another one after a rebalance) from publishing them again; this instance knows what
        it published. So it is written while the offsets are committed and the next batch is
        fetched, and awaited only before the next transaction (marks land in order). A
        failure to write it is logged, not retried: at worst those entries are published
        once more (at least once).
        """
        marking, self._marking = self._marking, None
        if marking is None:
            return
        try:
            await marking
        except PyMongoError as error:  # the mark is a plain driver call
            log.warning("published_mark_not_written", error=str(error))

    async def leftovers(
        self,
        stored: Mapping[str, StoredEntries],
        read_marks: Callable[[Iterable[str]], Awaitable[dict[str, int]]],
    ) -> dict[str, list[OutboxEntry]]:
        """Stored entries not known to be published: stamped past their writer's mark."""
        marks = {self.writer: self.published}
        others = {entries.writer for entries in stored.values()} - marks.keys()
        if others:
            marks.update(await read_marks(others))
        return {
            campaign_id: entries.entries
            for campaign_id, entries in stored.items()
            if entries.batch > marks.get(entries.writer, 0)
        }
