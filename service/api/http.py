"""The HTTP read API (contract: HTTP): the app factory and the bearer-token guard.

Reads only: every write comes through Kafka. Each resource has its own router in
`service.api.routes`; this module puts them together and guards all but the probes.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request

from service.adapters.mongo_analytics import MongoAnalytics
from service.adapters.mongo_reads import MongoReads
from service.adapters.mongo_review import ReviewReads
from service.api import openapi
from service.api.routes import (
    analytics,
    audits,
    campaigns,
    console,
    dead_letters,
    exports,
    health,
    iterations,
    metrics,
    reviewing,
    snapshots,
    specs,
    streams,
    versions,
)
from service.app.analytics import IterationAnalytics
from service.app.health import Health
from service.app.streams import RecentDeadLetters, SnapshotFeed, SnapshotReader


def bearer_guard(tokens: tuple[str, ...]) -> Callable[[Request], None]:
    encoded = [t.encode("utf-8") for t in tokens]

    def guard(request: Request) -> None:
        if not encoded:
            return
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        candidate = given.strip().encode("utf-8")
        # Compare with every token, always: the time taken says nothing about which matched.
        matched = False
        for token in encoded:
            matched |= hmac.compare_digest(candidate, token)
        if scheme.lower() != "bearer" or not matched:
            raise HTTPException(
                401, "a valid bearer token is required", {"WWW-Authenticate": "Bearer"}
            )

    return guard


def build_api(
    reads: MongoReads,
    health_: Health,
    tokens: tuple[str, ...],
    asyncapi: Callable[[], dict[str, Any]],
    *,
    feed: SnapshotFeed,
    reader: SnapshotReader,
    recent_dead_letters: RecentDeadLetters,
    keepalive_seconds: float,
    analytics_cache_seconds: float = 30.0,
    analytics_max_seconds: float = 300.0,
    lifespan: Any = None,
) -> FastAPI:
    app = FastAPI(
        title="campaign-ledger",
        version="0.1.0",
        description="Read API of the campaign ledger: snapshots, version history, audit "
        "lineage, iteration logs, metrics, exports, version content and diffs, iteration "
        "analytics, and live snapshots (Server-Sent Events).",
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    openapi.install(app)
    guarded = [Depends(bearer_guard(tokens))]
    for router in (
        snapshots.router(reader),
        streams.router(feed, reader, keepalive_seconds),
        versions.router(reads),
        audits.router(reads),
        reviewing.router(ReviewReads(reads.db)),
        iterations.router(reads),
        metrics.router(reads),
        exports.router(reads),
        campaigns.router(reads),
        analytics.router(
            IterationAnalytics(
                MongoAnalytics(reads.db), analytics_cache_seconds, analytics_max_seconds
            )
        ),
        dead_letters.router(recent_dead_letters),
        specs.router(app.openapi, asyncapi),
    ):
        app.include_router(router, dependencies=guarded)
    app.include_router(health.router(health_))
    app.include_router(console.router())  # static files; the data they load is guarded
    return app
