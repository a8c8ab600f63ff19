"""The analytics answer: one computation for requests that arrive together, reuse within
ANALYTICS_CACHE_SECONDS, a new computation after it (0: every time)."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from service.app.analytics import IterationAnalytics


class CountingRows:
    """Stands in for the aggregation's rows (the route's I/O is tested in integration)."""

    def __init__(self) -> None:
        self.calls = 0

    async def iteration_rows(
        self,
        since: datetime | None,
        until: datetime | None,
        artifact_type: str | None,
        max_seconds: float,
    ) -> dict[str, Any]:
        self.calls += 1
        await asyncio.sleep(0.05)
        return {"by_week": [], "to_pass": [], "rounds": []}


async def test_requests_together_share_one_computation_and_reuse_it() -> None:
    rows = CountingRows()
    analytics = IterationAnalytics(rows, cache_seconds=60, max_seconds=5)
    query = (None, None, "copy")
    answers = await asyncio.gather(*(analytics.answer(query) for _ in range(10)))
    assert rows.calls == 1
    assert all(a is answers[0] for a in answers)
    assert answers[0]["types"] == [] and answers[0]["artifact_type"] == "copy"
    await analytics.answer(query)
    assert rows.calls == 1
    await analytics.answer((None, None, None))  # another query, its own computation
    assert rows.calls == 2


async def test_no_cache_computes_every_time() -> None:
    rows = CountingRows()
    analytics = IterationAnalytics(rows, cache_seconds=0, max_seconds=5)
    await analytics.answer((None, None, None))
    await analytics.answer((None, None, None))
    assert rows.calls == 2


async def test_a_waiter_going_away_does_not_cancel_the_others() -> None:
    rows = CountingRows()
    analytics = IterationAnalytics(rows, cache_seconds=60, max_seconds=5)
    first = asyncio.create_task(analytics.answer((None, None, None)))
    second = asyncio.create_task(analytics.answer((None, None, None)))
    await asyncio.sleep(0.01)
    first.cancel()
    assert (await second)["types"] == []
    assert rows.calls == 1
