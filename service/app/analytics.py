"""`GET /analytics/iterations`: the aggregation, its figures, and a short-lived cache.

The aggregation reads every version and scored audit report of the window's artifact types
(scatter-gather on a sharded cluster), so its cost grows with the whole ledger, not with one
campaign. Dashboards poll it; the answer is kept for `ANALYTICS_CACHE_SECONDS` per distinct
query, and requests that arrive while it is being computed wait for that one computation
instead of starting their own. The aggregation is cut at `ANALYTICS_MAX_SECONDS`
(`maxTimeMS`), so a request never holds the database longer than that.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog

from service.domain.iteration_metrics import figures
from service.domain.state import iso

log = structlog.get_logger(__name__)

Query = tuple[datetime | None, datetime | None, str | None]
# Distinct queries kept: a dashboard asks a handful (its windows, its types).
CACHE_ENTRIES = 64


class IterationRows(Protocol):
    async def iteration_rows(
        self,
        since: datetime | None,
        until: datetime | None,
        artifact_type: str | None,
        max_seconds: float,
    ) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class Computed:
    body: dict[str, Any]
    at: float  # monotonic


class IterationAnalytics:
    def __init__(self, rows: IterationRows, cache_seconds: float, max_seconds: float) -> None:
        self.rows = rows
        self.cache_seconds = cache_seconds
        self.max_seconds = max_seconds
        self._cache: OrderedDict[Query, Computed] = OrderedDict()
        self._running: dict[Query, asyncio.Task[Computed]] = {}

    async def answer(self, query: Query) -> dict[str, Any]:
        cached = self._cache.get(query)
        if cached is not None and time.monotonic() - cached.at < self.cache_seconds:
            return cached.body
        task = self._running.get(query)
        if task is None:
            task = asyncio.create_task(self._compute(query))
            self._running[query] = task
            task.add_done_callback(lambda _: self._running.pop(query, None))
        # shielded: one waiter going away (a client disconnect) does not cancel the others'
        computed = await asyncio.shield(task)
        return computed.body

    async def _compute(self, query: Query) -> Computed:
        since, until, artifact_type = query
        started = time.perf_counter()
        rows = await self.rows.iteration_rows(since, until, artifact_type, self.max_seconds)
        types = figures(rows)
        seconds = time.perf_counter() - started
        body = {
            "since": iso(since),
            "until": iso(until),
            "artifact_type": artifact_type,
            "computed_at": iso(datetime.now(UTC)),
            "compute_seconds": round(seconds, 3),
            "types": types,
        }
        log.info(
            "analytics_computed",
            since=body["since"],
            until=body["until"],
            artifact_type=artifact_type,
            seconds=round(seconds, 3),
            artifacts=sum(t["artifacts"] for t in types),
        )
        computed = Computed(body, time.monotonic())
        if self.cache_seconds > 0:
            self._cache[query] = computed
            self._cache.move_to_end(query)
            while len(self._cache) > CACHE_ENTRIES:
                self._cache.popitem(last=False)
        return computed
