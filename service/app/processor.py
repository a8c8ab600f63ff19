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

With `publish_behind`, step 3 of one batch runs beside step 2 of the next (`process` says when
its transactions are done: `stored`), in order: a batch's publication begins once the one
before it has ended, and a batch sharing a campaign with the publication in flight waits for
it before its transaction (that campaign's document holds the entries being published). A
failed send is retried in place until Kafka takes it, or until a rebalance or a stop gives
it up (`give_up_retrying`): the batch's offsets are then never committed, so the partitions'
next owner redelivers it and publishes its entries as leftovers.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog

from service.app import telemetry, tracing
from service.app.outbox import (
    OutboxEntry,
    PublishedMarks,
    Publisher,
    Stamp,
    dead_letter,
    semantic_dead_letter,
    snapshot_entry,
)
from service.app.owned import OwnedCampaigns
from service.app.store import ConcurrentUpdate, Store, StoreRejected, Transaction
from service.domain.ingest import RawRecord, Rejection, decode
from service.domain.ledger import (
    Changes,
    Inbound,
    Missing,
    Publication,
    View,
    apply_batch,
    prefetch_keys,
)

log = structlog.get_logger(__name__)

MAX_CONFLICT_RETRIES = 8
# Pauses between the sends of a publication Kafka refuses (publish_behind): growing to the cap.
RETRY_FIRST_SECONDS = 0.5
RETRY_MAX_SECONDS = 30.0
TRANSACTION_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class BatchResult:
    records: int
    applied: int
    duplicates: int
    held: int
    rejected: int
    revisions: int


@dataclass(frozen=True, slots=True)
class _Committed:
    """A committed transaction's publication, still to do: `entries` in order (the outbox
    collection's leftovers first), then the outbox collection's entries among them deleted."""

    entries: list[OutboxEntry]
    from_collection: list[OutboxEntry]  # to delete once published
    campaigns: set[str]
    stamp: Stamp
    now: datetime
    stored_any: bool  # the batch stored entries in campaign documents (the mark moves)
    committed: float  # perf_counter() at the commit


@dataclass(frozen=True, slots=True)
class _Behind:
    """The publication of the last batch, running beside the next one."""

    done: asyncio.Future[None]
    campaigns: set[str]


@dataclass(frozen=True, slots=True)
class _Applied:
    changes: Changes
    # what to publish after the commit, each campaign's revisions in order
    publish: list[OutboxEntry]
    stored: list[OutboxEntry]  # what went to the outbox collection
    written: float  # perf_counter() when the writes were sent, before the commit
    view: View
    noted: dict[str, datetime | None]
    none_held: bool


class BatchProcessor:
    """Runs the batches of one consumer, one after the other.

    Each batch's outbox entries are stamped (see `service.app.outbox`). A loaded document
    whose stamp is past its writer's published mark (a crash or a failure between commit
    and publication) has entries that may never have gone out: the batch publishes them
    again, first, and carries them into the document it rewrites, or restamps the document
    it does not rewrite, so they go out once more, not every time.
    """

    def __init__(
        self,
        store: Store,
        publisher: Publisher,
        *,
        max_event_bytes: int,
        publication: Publication = "every",
        publish_behind: bool = False,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.max_event_bytes = max_event_bytes
        self.publication: Publication = publication
        self.publish_behind = publish_behind
        self.clock = clock
        self.marks = PublishedMarks(uuid.uuid4().hex, store.outbox.mark_published)
        self.owned = OwnedCampaigns()
        self._behind: _Behind | None = None
        self._give_up = asyncio.Event()  # set: a publication Kafka refuses is not retried

    @tracing.traced_batch
    async def process(
        self, records: Sequence[RawRecord], stored: Callable[[], None] | None = None
    ) -> BatchResult:
        """Store, publish, return. `stored` is called once the batch's transactions are
        committed, before its last publication: with `publish_behind` the next batch may
        begin then."""
        started = time.perf_counter()
        stamps = [r.timestamp_ms for r in records if r.timestamp_ms is not None]
        if stamps:
            waited = max(0.0, time.time() - min(stamps) / 1000)
            telemetry.BATCH_PHASE_SECONDS.labels("wait").observe(waited)
        before = self._behind  # the last batch's publication, if it is still running
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
        due: _Committed | None = None  # committed, not yet published
        for chunk in _chunks(inbound):
            await self._publish_due(due, before)
            due = None
            try:
                stored_changes, due = await self._store(chunk, before)
            except StoreRejected as error:
                # Something in the chunk cannot be stored; find it by storing one at a time.
                log.warning("batch_refused_isolating", error=str(error), size=len(chunk))
                stored_changes = Changes()
                for item in chunk:
                    await self._publish_due(due, before)
                    due = None
                    try:
                        one, due = await self._store([item], before)
                    except StoreRejected as refused:
                        rejections.append(Rejection("unstorable_value", str(refused), item.record))
                        continue
                    _merge(stored_changes, one)
            _merge(changes, stored_changes)
        # Not marked as processed, so a redelivery finds and sends them again.
        now = self.clock()
        dead = [dead_letter(r, now) for r in rejections]
        if self.publish_behind:
            await self._publish_behind(due, dead, before, stored)
        else:
            if stored is not None:
                stored()
            try:
                await self._publish(due, dead, before)
            except BaseException:
                self.owned.forget()
                raise
        result = BatchResult(
            records=len(records),
            applied=changes.applied,
            duplicates=changes.duplicates,
            held=len(changes.held),
            rejected=len(rejections) + len(changes.rejections),
            revisions=changes.revisions,
        )
        _observe(
            result,
            [r.reason for r in rejections] + [r.reason for r in changes.rejections],
            time.perf_counter() - started,
        )
        return result

    def give_up_retrying(self) -> None:
        """A publication Kafka refuses fails its batch instead of being sent again: before a
        rebalance or a stop, which must not wait for Kafka to come back."""
        self._give_up.set()

    async def flush(self) -> None:
        """Let the last publication end, write the published mark now, and forget the owned
        campaigns: before a rebalance or a stop."""
        if (behind := self._behind) is not None:
            with contextlib.suppress(Exception):
                await behind.done
        self.owned.forget()
        await self.marks.flush()
        self._give_up.clear()

    async def _publish_due(self, due: _Committed | None, before: _Behind | None) -> None:
        """Publish what the transaction before committed, before the next one begins (so
        nothing is left due: the caller's `due` is None after it)."""
        if due is None:
            return
        try:
            await self._publish(due, [], before)
        except BaseException:
            self.owned.forget()
            raise

    async def _store(
        self, inbound: list[Inbound], before: _Behind | None
    ) -> tuple[Changes, _Committed]:
        """Apply in one transaction; the publication is the caller's."""
        campaigns = {i.event.campaign_id for i in inbound}
        try:
            if before is not None and not before.done.done() and before.campaigns & campaigns:
                # A campaign's document holds the entries being published: let them go out
                # before it is written again.
                await before.done
            return await self._store_owned(inbound, campaigns)
        except BaseException:
            # The store may hold more than this instance knows (a commit whose answer was
            # lost, entries not published): read everything again next time.
            self.owned.forget()
            raise

    async def _store_owned(
        self, inbound: list[Inbound], campaigns: set[str]
    ) -> tuple[Changes, _Committed]:
        await self.marks.settle()  # the previous chunk's mark goes before this one's
        now = self.clock()
        seq_base = time.time_ns()
        stamp = self.marks.next_stamp()
        for attempt in range(MAX_CONFLICT_RETRIES):
            try:
                applied = await self.store.in_transaction(
                    lambda tx: self._apply(
                        tx, inbound, campaigns=campaigns, now=now, seq_base=seq_base, stamp=stamp
                    ),
                    write_first=self.owned.covers(campaigns),
                )
                break
            except ConcurrentUpdate:
                # another instance wrote one of these campaigns (a rebalance): read again
                self.owned.forget(campaigns)
                await asyncio.sleep(0.05 * 2**attempt)
        else:
            msg = "campaigns kept changing under this batch; it will be redelivered"
            raise ConcurrentUpdate(msg)
        committed = time.perf_counter()
        telemetry.BATCH_PHASE_SECONDS.labels("commit").observe(committed - applied.written)
        tracing.phases(applied.written, commit=committed)
        # Entries in the outbox collection (dead letters decided by the rules, snapshots too
        # large for their document) go first: a leftover there is older than anything new.
        # Only campaigns this instance does not know to be clean are looked up.
        unknown = self.owned.outbox_unknown(campaigns)
        pending = await self.store.outbox.pending(unknown) if unknown else []
        pending += [e for e in applied.stored if e.campaign_id not in unknown]
        # What the batch leaves is known now; a failed publication forgets it (`_store`).
        self.owned.keep(
            applied.view, applied.changes, campaigns, applied.noted, held_free=applied.none_held
        )
        return applied.changes, _Committed(
            pending + applied.publish,
            pending,
            campaigns,
            stamp,
            now,
            bool(applied.publish),
            committed,
        )

    async def _publish_behind(
        self,
        due: _Committed | None,
        dead: list[OutboxEntry],
        before: _Behind | None,
        stored: Callable[[], None] | None,
    ) -> None:
        """The batch's last publication, announced as running before `stored` is called."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # Read by the next batch (or by nobody, if none comes before the next failure).
        done.add_done_callback(lambda f: f.cancelled() or f.exception())
        behind = _Behind(done, due.campaigns if due is not None else set())
        self._behind = behind
        if stored is not None:
            stored()
        try:
            await self._publish(due, dead, before)
        except BaseException as error:
            self.owned.forget()
            if isinstance(error, Exception):
                done.set_exception(error)
            else:
                done.cancel()
            raise
        else:
            done.set_result(None)
        finally:
            if self._behind is behind:
                self._behind = None

    async def _publish(
        self, due: _Committed | None, dead: list[OutboxEntry], before: _Behind | None
    ) -> None:
        """Send what a commit left to publish, after the last batch's publication."""
        if before is not None:
            await before.done  # its failure is this batch's: nothing goes out of order
        if due is not None:
            await self._sending(due.entries)
            self.marks.published_up_to(due.stamp, due.now, stored_any=due.stored_any)
            published = time.perf_counter()
            telemetry.BATCH_PHASE_SECONDS.labels("publish").observe(published - due.committed)
            tracing.phases(due.committed, publish=published)
            if due.from_collection:
                await self._retried(lambda: self.store.outbox.delete(due.from_collection))
        if dead:
            await self._sending(dead)

    async def _sending(self, entries: list[OutboxEntry]) -> None:
        await self._retried(lambda: self.publisher.publish(entries))

    async def _retried(self, step: Callable[[], Awaitable[None]]) -> None:
        """Run `step`; with `publish_behind`, again after a pause while it fails, until it
        succeeds or retrying is given up (the batch's publication stands, its offsets wait)."""
        pause = RETRY_FIRST_SECONDS
        while True:
            try:
                await step()
            except Exception as error:
                if not self.publish_behind or self._give_up.is_set():
                    raise
                telemetry.PUBLICATION_RETRIES.inc()
                log.warning("publication_retry", error=str(error), pause_seconds=pause)
            else:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._give_up.wait(), pause)
            pause = min(RETRY_MAX_SECONDS, pause * 2)

    async def _apply(
        self,
        tx: Transaction,
        inbound: list[Inbound],
        *,
        campaigns: set[str],
        now: datetime,
        seq_base: int,
        stamp: Stamp,
    ) -> _Applied:
        phase = telemetry.BATCH_PHASE_SECONDS
        started = time.perf_counter()
        view = View()
        keys = prefetch_keys(inbound)
        for cid, owned in self.owned.lend(view, keys, campaigns).items():
            tx.noted[cid] = owned.noted
            tx.lent = True
        await tx.load(view, keys)
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
        leftovers = await self.marks.leftovers(tx.stored_outbox, tx.published_marks)
        new = [snapshot_entry(s, now) for s in changes.snapshots]
        # A rewritten document keeps its leftovers until they are known to be published.
        carried = [e for c in changes.campaigns if c in leftovers for e in leftovers[c]]
        dead = [semantic_dead_letter(r, now) for r in changes.rejections]
        untouched = {c: v for c, v in leftovers.items() if c not in changes.campaigns}
        tx.restamp({c: _revision(view, c) for c in untouched}, stamp)
        stored = await tx.write(view, changes, carried + new + dead, now, stamp=stamp)
        written = time.perf_counter()
        phase.labels("load").observe(loaded - started)
        phase.labels("rules").observe(ruled - loaded)
        phase.labels("write").observe(written - ruled)
        tracing.phases(started, load=loaded, rules=ruled, write=written)
        tracing.outcomes(inbound, changes, view)
        publish = [e for entries in untouched.values() for e in entries] + carried + new
        return _Applied(changes, publish, stored, written, view, tx.noted, tx.none_held)


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


def _observe(result: BatchResult, reasons: Sequence[str], seconds: float) -> None:
    telemetry.BATCH_SECONDS.observe(seconds)
    telemetry.BATCH_SIZE.observe(result.records)
    telemetry.EVENTS.labels("applied").inc(result.applied)
    telemetry.EVENTS.labels("duplicate").inc(result.duplicates)
    telemetry.EVENTS.labels("held").inc(result.held)
    telemetry.EVENTS.labels("rejected").inc(result.rejected)
    telemetry.SNAPSHOT_REVISIONS.inc(result.revisions)
    for reason in reasons:
        telemetry.REJECTIONS.labels(reason).inc()
