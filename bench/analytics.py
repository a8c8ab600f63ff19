"""`make bench` (analytics): GET /analytics/iterations over 10,000 campaigns.

10,000 campaigns x 3 artifacts (copy, short_copy, visual_concept) x 4 versions: 120,000
versions, each with a scored audit (a fifth of them after an audit attempt that failed with
`outcome: error`), parent links, approvals, first versions spread over twelve weeks. The
documents are inserted straight into the service's database in bulk (what the route reads:
versions and audit reports, shaped as the service writes them and accepted by its
validators); sending them through Kafka would take this machine the better part of an hour
and measure the consumer, which `python -m bench` does.

Two service processes share that database:
- uncached (`ANALYTICS_CACHE_SECONDS=0`): every request runs the aggregation; a few requests
  for all types and for one type, each timed, p50 and p99 (with this few samples, p99 is the
  slowest);
- cached (defaults: an answer is reused for 30 s): many requests, p50 and p99, the first of
  which computes.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from pymongo import AsyncMongoClient

from bench.__main__ import Child, servers
from bench.streams import pct

KINDS = ("copy", "short_copy", "visual_concept")
CATEGORIES = ("brand_voice", "clarity", "compliance")
VERSIONS = 4


def campaign_documents(
    index: int, rng: random.Random, start: datetime
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """One campaign's versions and audit reports, as the service stores them."""
    campaign = f"bench-an-{index:05d}"
    first = start + timedelta(minutes=rng.randrange(12 * 7 * 24 * 60))
    versions: list[dict[str, Any]] = []
    audits: list[dict[str, Any]] = []
    for kind in KINDS:
        artifact = f"{campaign}.{kind}"
        passes_at = rng.choice([1, 2, 2, 3, 3, 4, None])
        base = rng.randrange(35, 70)
        for n in range(1, VERSIONS + 1):
            version = f"{artifact}.v{n}"
            created = first + timedelta(hours=3 * n)
            state = "passed" if n == passes_at else "failed"
            doc: dict[str, Any] = {
                "_id": version,
                "version_id": version,
                "campaign_id": campaign,
                "artifact_id": artifact,
                "artifact_type": kind,
                "version_number": n,
                "created_at": created,
                "content": {"headline": f"Take {n}", "body": "lorem ipsum " * 20},
                "content_sha256": f"{index:064x}",
                "extra": {},
                "audit_state": state,
                "audit_attempts": 1,
                "feedback_count": 0 if n == VERSIONS else 1,
                "archived": False,
                "approved": n == passes_at,
                "run_id": f"{campaign}.run-1",
            }
            if n > 1:
                doc["parent_version_id"] = f"{artifact}.v{n - 1}"
            if n == passes_at:
                doc["approved_at"] = created + timedelta(minutes=rng.randrange(30, 600))
            attempt = 1
            if rng.random() < 0.2:
                audits.append(
                    _audit(
                        campaign,
                        artifact,
                        version,
                        attempt=1,
                        outcome="error",
                        scores=None,
                        at=created,
                    )
                )
                attempt = 2
                doc["audit_attempts"] = 2
            scores = {
                c: {"score": min(100, base + 9 * n + rng.randrange(-5, 6))} for c in CATEGORIES
            }
            outcome = "pass" if state == "passed" else "fail"
            audits.append(
                _audit(
                    campaign,
                    artifact,
                    version,
                    attempt=attempt,
                    outcome=outcome,
                    scores=scores,
                    at=created,
                )
            )
            versions.append(doc)
    return versions, audits


def _audit(
    campaign: str,
    artifact: str,
    version: str,
    *,
    attempt: int,
    outcome: str,
    scores: dict[str, Any] | None,
    at: datetime,
) -> dict[str, Any]:
    return {
        "_id": f"ar-{version}-{attempt}",
        "campaign_id": campaign,
        "artifact_id": artifact,
        "version_id": version,
        "attempt": attempt,
        "outcome": outcome,
        "audit_state": {"pass": "passed", "fail": "failed", "error": "unaudited"}[outcome],
        "category_scores": scores,
        "flagged_items": None,
        "recommendations": None,
        "auditor": "bench",
        "error": "timed out" if outcome == "error" else None,
        "completed_at": at + timedelta(minutes=20 * attempt),
        "extra": {},
    }


async def load(mongo: str, database: str, campaigns: int) -> float:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo)
    db = client[database]
    rng = random.Random(20)
    start = datetime(2026, 9, 7, tzinfo=UTC)
    started = time.perf_counter()
    versions: list[dict[str, Any]] = []
    audits: list[dict[str, Any]] = []
    for index in range(campaigns):
        more_versions, more_audits = campaign_documents(index, rng, start)
        versions += more_versions
        audits += more_audits
        if len(versions) >= 6000 or index == campaigns - 1:
            await db.versions.insert_many(versions, ordered=False)
            await db.audit_reports.insert_many(audits, ordered=False)
            versions, audits = [], []
    seconds = time.perf_counter() - started
    counts = (
        await db.versions.estimated_document_count(),
        await db.audit_reports.estimated_document_count(),
    )
    await client.close()
    print(
        f"analytics: {campaigns:,} campaigns x {len(KINDS)} artifacts x {VERSIONS} versions: "
        f"{counts[0]:,} versions and {counts[1]:,} audit reports inserted in {seconds:.0f} s",
        flush=True,
    )
    return seconds


async def timed(client: httpx.AsyncClient, path: str) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    answer = await client.get(path)
    elapsed = (time.perf_counter() - started) * 1000
    answer.raise_for_status()
    body: dict[str, Any] = answer.json()
    return elapsed, body


def figures(label: str, timings: list[float]) -> str:
    timings = sorted(timings)
    return (
        f"  {label:44} n={len(timings):<4} p50 {statistics.median(timings):9,.1f} ms  "
        f"p99 {pct(timings, 0.99):9,.1f} ms"
    )


async def bench(args: argparse.Namespace) -> None:
    with servers() as (kafka, mongo):
        uncached = Child(kafka, mongo)
        uncached.env = {
            **uncached.env,
            "ANALYTICS_CACHE_SECONDS": "0",
            "ANALYTICS_MAX_SECONDS": str(args.max_seconds),
        }
        cached = Child(kafka, mongo)
        cached.topics = uncached.topics
        cached.env = {
            **uncached.env,
            "HTTP_PORT": str(cached.port),
            "ANALYTICS_CACHE_SECONDS": "30",
        }
        try:
            await uncached.start()
            await cached.start()
            await load(mongo, uncached.env["MONGODB_DATABASE"], args.campaigns)
            timeout = httpx.Timeout(args.max_seconds + 30)
            async with httpx.AsyncClient(base_url=uncached.url, timeout=timeout) as client:
                for label, path in (
                    ("uncached, all types", "/analytics/iterations"),
                    ("uncached, artifact_type=copy", "/analytics/iterations?artifact_type=copy"),
                ):
                    timings = []
                    for _ in range(args.requests):
                        elapsed, body = await timed(client, path)
                        timings.append(elapsed)
                        print(
                            f"    {label}: {elapsed:,.0f} ms (aggregation and figures "
                            f"{body['compute_seconds']:.1f} s)",
                            flush=True,
                        )
                    print(figures(label, timings), flush=True)
                copy = next(t for t in body["types"] if t["artifact_type"] == "copy")
                print(
                    f"  copy: {copy['artifacts']:,} artifacts, {copy['versions']:,} versions, "
                    f"mean {copy['mean_versions_to_first_pass']} / p90 "
                    f"{copy['p90_versions_to_first_pass']} versions until passed, first-pass "
                    f"rate {copy['first_pass_rate']}, {len(copy['by_week'])} weeks",
                    flush=True,
                )
            async with httpx.AsyncClient(base_url=cached.url, timeout=timeout) as client:
                timings = [(await timed(client, "/analytics/iterations"))[0]]
                timings += [
                    (await timed(client, "/analytics/iterations"))[0]
                    for _ in range(args.cached_requests - 1)
                ]
                print(figures("cached (30 s; the first request computes)", timings), flush=True)
        finally:
            uncached.stop()
            cached.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.analytics")
    parser.add_argument("--campaigns", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=3, help="uncached requests per query")
    parser.add_argument("--cached-requests", type=int, default=200)
    parser.add_argument("--max-seconds", type=float, default=900)
    asyncio.run(bench(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
