"""Time-driven duties: held events that waited too long, and purges after retention."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import structlog

from service.adapters.mongo_documents import held_record
from service.adapters.mongo_maintenance import MongoMaintenance
from service.app import telemetry, tracing
from service.app.outbox import Publisher, dead_letter
from service.app.store import StoreUnavailable
from service.domain.ingest import Rejection

log = structlog.get_logger(__name__)

SWEEP_LIMIT = 500


class Maintenance:
    def __init__(
        self,
        store: MongoMaintenance,
        publisher: Publisher,
        *,
        hold_seconds: float,
        retention_seconds: float,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.hold = timedelta(seconds=hold_seconds)
        self.retention = timedelta(seconds=retention_seconds)
        self.clock = clock

    async def run_once(self) -> None:
        await self.expire_holds()
        await self.purge()
        telemetry.HELD_PENDING.set(await self.store.count_held())
        oldest = await self.store.oldest_held_at()
        age = 0.0 if oldest is None else (self.clock() - oldest).total_seconds()
        telemetry.HELD_OLDEST_AGE.set(max(0.0, age))

    @tracing.traced_sweep("ledger expire held")
    async def expire_holds(self) -> int:
        """Dead-letter held events whose version did not come in time (contract 5)."""
        now = self.clock()
        claimed = await self.store.claim_expired_holds(now - self.hold, SWEEP_LIMIT)
        if not claimed:
            return 0
        entries = [
            dead_letter(
                Rejection(
                    "held_too_long",
                    f"version {doc['version_id']} was not stored within "
                    f"AUDIT_HOLD_SECONDS={self.hold.total_seconds():g}; this "
                    f"{doc['event_type']} event was held since {doc['held_at'].isoformat()}",
                    held_record(doc),
                ),
                now,
                doc["campaign_id"],
            )
            for doc in claimed
        ]
        # Published before the held documents go: a crash in between sends them again.
        await self.publisher.publish(entries)
        await self.store.drop_held([doc["_id"] for doc in claimed])
        telemetry.HELD_EXPIRED.inc(len(claimed))
        log.info("held_events_expired", count=len(claimed))
        return len(claimed)

    async def purge(self) -> int:
        """Delete campaigns whose soft delete is older than CAMPAIGN_RETENTION_DAYS."""
        cutoff = self.clock() - self.retention
        purged = 0
        for campaign_id in await self.store.campaigns_to_purge(cutoff, SWEEP_LIMIT):
            if await self.store.purge_campaign(campaign_id, cutoff):
                purged += 1
                log.info("campaign_purged", campaign_id=campaign_id)
        telemetry.CAMPAIGNS_PURGED.inc(purged)
        return purged

    async def run_forever(self, interval: float) -> None:
        while True:
            try:
                await self.run_once()
            except StoreUnavailable as error:
                log.warning("maintenance_store_unavailable", error=str(error))
            except Exception:
                # A sweep must never take the service down; the next one tries again.
                log.exception("maintenance_failed")
            await asyncio.sleep(interval)
