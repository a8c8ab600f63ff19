"""The use case: one Kafka batch in, stored durably, snapshots and dead letters out.

Order of effects, which is what the guarantees rest on:
1. decode every record; the bad ones become rejections (nothing is dropped);
2. one MongoDB transaction: load the touched state, run the rules, write everything,
   including one outbox entry per new snapshot revision;
3. publish the outbox (older leftovers of the touched campaigns first) and the rejections,
   waiting for Kafka's acknowledgements, then clear the published outbox entries;
4. only then may the caller commit the batch's offsets.
A crash anywhere before 4 redelivers the batch: step 2 finds every event already applied and
changes nothing, step 3 publishes what may not have been published.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson
import structlog
from pymongo.errors import PyMongoError

from service.adapters.mongo_store import (
    ConcurrentUpdate,
    MongoStore,
    OutboxEntry,
    Stamp,
    StoreRejected,
    Transaction,
)
from service.app import telemetry, tracing
from service.domain.events import EventType
from service.domain.ingest import RawRecord, Rejection, decode
from service.domain.ledger import (
    Changes,
    Inbound,
    Missing,
    Publication,
    SemanticRejection,
    View,
    apply_batch,
    prefetch_keys,
)
from service.domain.state import iso

log = structlog.get_logger(__name__)

SOURCE = "urn:campaign-ledger"
MAX_CONFLICT_RETRIES = 8
TRANSACTION_BYTES = 8 * 1024 * 1024
# How often, at most, the published mark is written while batches run. The mark only spares
# a later owner of the same documents from publishing their entries again (this instance
# knows what it published): after a crash, up to this much is published once more. A
# rebalance and a stop write it at once (`flush`). One write per batch cost a few ms of
# database time per small batch, on the way to the next transaction.
MARK_INTERVAL_SECONDS = 1.0


class Publisher(Protocol):
    """Where snapshots and dead letters go; Kafka in production (adapters.kafka_publisher)."""

    async def publish(self, entries: Sequence[OutboxEntry]) -> None:
        """Send each entry to its topic, keyed, in order; return once all are acknowledged."""


@dataclass(frozen=True, slots=True)
class BatchResult:
    records: int
    applied: int
    duplicates: int
    held: int
    rejected: int
    revisions: int


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
        **tracing.OUTBOUND.get(),
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


@dataclass(frozen=True, slots=True)
class _Applied:
    changes: Changes
    # what to publish after the commit, each campaign's revisions in order
    publish: list[OutboxEntry]
    written: float  # perf_counter() when the writes were sent, before the commit


class BatchProcessor:
    """Runs the batches of one consumer, one after the other.

    The snapshot outbox rides in the snapshot documents (see `Transaction.write`), stamped
    with this processor's `writer` name (new at each start) and the batch number. After a
    batch's publication the store notes "writer W published up to batch B" (one small
    write, at most once per MARK_INTERVAL_SECONDS, and at once before a rebalance or a
    stop). A loaded document whose stamp is past its writer's mark (a crash or a failure
    between commit and publication) has entries that may never have gone out: the batch
    publishes them again, first, and carries them into the document it rewrites, or
    restamps the document it does not rewrite, so they go out once more, not every time.
    """

    def __init__(
        self,
        store: MongoStore,
        publisher: Publisher,
        *,
        max_event_bytes: int,
        publication: Publication = "every",
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.max_event_bytes = max_event_bytes
        self.publication: Publication = publication
        self.clock = clock
        self.writer = uuid.uuid4().hex
        self.batches = 0  # the number of the last batch begun
        self.published = 0  # every entry of this writer up to this batch is published
        self._marking: asyncio.Future[None] | None = None  # the mark being written (`settle`)
        self._unmarked: tuple[Stamp, datetime] | None = None  # published, mark not written
        self._marked_at = float("-inf")  # monotonic time the last write began

    @tracing.traced_batch
    async def process(self, records: Sequence[RawRecord]) -> BatchResult:
        started = time.perf_counter()
        stamps = [r.timestamp_ms for r in records if r.timestamp_ms is not None]
        if stamps:
            waited = max(0.0, time.time() - min(stamps) / 1000)
            telemetry.BATCH_PHASE_SECONDS.labels("wait").observe(waited)
        inbound: list[Inbound] = []
        rejections: list[Rejection] = []
        for record in records:
            decoded = decode(record, self.max_event_bytes)
            if isinstance(decoded, Rejection):
                rejections.append(decoded)
            else:
                inbound.append(Inbound(decoded, record))
        tracing.begin(inbound, rejections)
        changes = Changes()
        for chunk in _chunks(inbound):
            try:
                stored, published = await self._store(chunk)
            except StoreRejected as error:
                # Something in the chunk cannot be stored; find it by storing one at a time.
                log.warning("batch_refused_isolating", error=str(error), size=len(chunk))
                stored, published = Changes(), []
                for item in chunk:
                    try:
                        one, sent = await self._store([item])
                    except StoreRejected as refused:
                        rejections.append(Rejection("unstorable_value", str(refused), item.record))
                        continue
                    _merge(stored, one)
                    published.extend(sent)
            _merge(changes, stored)
            await self.store.delete_outbox(published)
        if rejections:
            # Not marked as processed, so a redelivery finds and sends them again.
            now = self.clock()
            await self.publisher.publish([dead_letter(r, now) for r in rejections])
        result = BatchResult(
            records=len(records),
            applied=changes.applied,
            duplicates=changes.duplicates,
            held=len(changes.held),
            rejected=len(rejections) + len(changes.rejections),
            revisions=changes.revisions,
        )
        telemetry.observe_batch(
            result,
            [r.reason for r in rejections] + [r.reason for r in changes.rejections],
            time.perf_counter() - started,
        )
        return result

    async def flush(self) -> None:
        """Write the published mark now, up to the last batch published: before a rebalance
        hands the campaigns to another instance, and before a stop."""
        await self.settle()
        if self._unmarked is not None:
            self._mark(*self._unmarked)
            await self.settle()

    def _mark(self, stamp: Stamp, now: datetime) -> None:
        """Begin writing the mark; `settle` waits for it."""
        self._unmarked = None
        self._marked_at = time.monotonic()
        self._marking = asyncio.ensure_future(self.store.mark_published(stamp, now))

    async def settle(self) -> None:
        """Wait for the published mark being written, if one is.

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
        except PyMongoError as error:  # mark_published is a plain driver call
            log.warning("published_mark_not_written", error=str(error))

    async def _store(self, inbound: list[Inbound]) -> tuple[Changes, list[OutboxEntry]]:
        """Apply in one transaction, then publish the touched campaigns' outbox."""
        await self.settle()  # the previous chunk's mark goes before this one's
        now = self.clock()
        seq_base = time.time_ns()
        self.batches += 1
        stamp = Stamp(self.writer, self.batches)
        for attempt in range(MAX_CONFLICT_RETRIES):
            try:
                applied = await self.store.in_transaction(
                    lambda tx: self._apply(tx, inbound, now, seq_base, stamp)
                )
                break
            except ConcurrentUpdate:
                # another instance wrote one of these campaigns (a rebalance): read again
                await asyncio.sleep(0.05 * 2**attempt)
        else:
            msg = "campaigns kept changing under this batch; it will be redelivered"
            raise ConcurrentUpdate(msg)
        committed = time.perf_counter()
        telemetry.BATCH_PHASE_SECONDS.labels("commit").observe(committed - applied.written)
        tracing.phases(applied.written, commit=committed)
        # Entries in the outbox collection (dead letters decided by the rules, snapshots too
        # large for their document) go first: a leftover there is older than anything new.
        pending = await self.store.pending_outbox({i.event.campaign_id for i in inbound})
        await self.publisher.publish(pending + applied.publish)
        if applied.publish:
            self._unmarked = (stamp, now)
            if time.monotonic() - self._marked_at >= MARK_INTERVAL_SECONDS:
                # Not awaited here: the caller commits the offsets meanwhile (see `settle`).
                self._mark(stamp, now)
        self.published = stamp.batch
        telemetry.BATCH_PHASE_SECONDS.labels("publish").observe(time.perf_counter() - committed)
        tracing.phases(committed, publish=time.perf_counter())
        return applied.changes, pending

    async def _apply(
        self, tx: Transaction, inbound: list[Inbound], now: datetime, seq_base: int, stamp: Stamp
    ) -> _Applied:
        phase = telemetry.BATCH_PHASE_SECONDS
        started = time.perf_counter()
        view = View()
        await tx.load(view, prefetch_keys(inbound))
        loaded = time.perf_counter()
        while True:
            try:
                changes = apply_batch(
                    inbound, view, now=now, seq_base=seq_base, publication=self.publication
                )
                break
            except Missing as missing:
                telemetry.VIEW_RELOADS.inc()
                await tx.load_missing(view, missing)
        ruled = time.perf_counter()
        leftovers = await self._leftovers(tx)
        new = [snapshot_entry(s, now) for s in changes.snapshots]
        # A rewritten document keeps its leftovers until they are known to be published.
        carried = [e for c in changes.campaigns if c in leftovers for e in leftovers[c]]
        dead = [semantic_dead_letter(r, now) for r in changes.rejections]
        await tx.write(view, changes, carried + new + dead, now, stamp=stamp)
        untouched = {c: v for c, v in leftovers.items() if c not in changes.campaigns}
        await tx.restamp({c: _revision(view, c) for c in untouched}, stamp)
        written = time.perf_counter()
        phase.labels("load").observe(loaded - started)
        phase.labels("rules").observe(ruled - loaded)
        phase.labels("write").observe(written - ruled)
        tracing.phases(started, load=loaded, rules=ruled, write=written)
        tracing.outcomes(inbound, changes, view)
        publish = [e for entries in untouched.values() for e in entries] + carried + new
        return _Applied(changes, publish, written)

    async def _leftovers(self, tx: Transaction) -> dict[str, list[OutboxEntry]]:
        """Stored entries not known to be published: stamped past their writer's mark."""
        marks = {self.writer: self.published}
        others = {stored.writer for stored in tx.stored_outbox.values()} - marks.keys()
        if others:
            marks.update(await tx.published_marks(others))
        return {
            campaign_id: stored.entries
            for campaign_id, stored in tx.stored_outbox.items()
            if stored.batch > marks.get(stored.writer, 0)
        }


def _revision(view: View, campaign_id: str) -> int:
    state = view.campaigns[campaign_id]
    if state is None:  # pragma: no cover - a stored document is loaded as a state
        msg = f"campaign {campaign_id} has stored entries but no state"
        raise AssertionError(msg)
    return state.revision


def _chunks(inbound: list[Inbound]) -> list[list[Inbound]]:
    """Consecutive slices of at most TRANSACTION_BYTES of values: a transaction stays small
    however large the events of one Kafka batch are (a batch may hold 1,000 of 1 MiB)."""
    chunks: list[list[Inbound]] = []
    size = TRANSACTION_BYTES
    for item in inbound:
        weight = len(item.record.value or b"")
        if size + weight > TRANSACTION_BYTES:
            chunks.append([])
            size = 0
        chunks[-1].append(item)
        size += weight
    return chunks


def _merge(into: Changes, one: Changes) -> None:
    into.applied += one.applied
    into.duplicates += one.duplicates
    into.held.extend(one.held)
    into.snapshots.extend(one.snapshots)
    into.revisions += one.revisions
    into.rejections.extend(one.rejections)
