"""`make bench` (reads): GET snapshot throughput for many viewers, uncached and cached side by side.

The issue's setup: 50 connections on the same machine, one service process per path, a
campaign of 20 artifacts (a 5 KB snapshot). Three instances share the topics and database:

- uncached: `SNAPSHOT_CACHE_ENTRIES=0`, every read fetches the stored snapshot (the old path);
- cached (default settings): a revision-only check, shared by all reads arriving while one
  runs, and the body from memory;
- memory: `SNAPSHOT_CACHE_SECONDS=1`, no MongoDB at all while the entry is that recent;
- and the cached instance answering `If-None-Match` with the current ETag (304).

wrk (Debian's, installed here when missing and allowed) drives the load; without it a
slower Python client does, and the figures say so.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import time
import uuid

import httpx
import uvloop

from bench.__main__ import Child, event, servers
from bench.streams import pct

UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def ensure_wrk() -> str | None:
    found = shutil.which("wrk")
    apt = shutil.which("apt-get")
    if found is None and os.geteuid() == 0 and apt:
        subprocess.run(  # noqa: S603 - Debian's package tool, fixed arguments
            [apt, "install", "-y", "-qq", "wrk"],
            check=False,
            capture_output=True,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
        found = shutil.which("wrk")
    return found


def run_wrk(wrk: str, url: str, connections: int, seconds: int, headers: dict[str, str]) -> str:
    command = [wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    for name, value in headers.items():
        command[1:1] = ["-H", f"{name}: {value}"]
    out = subprocess.run(  # noqa: S603 - wrk with arguments this bench builds
        command, check=True, capture_output=True, text=True
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    latency = {}
    for q in ("50", "99"):
        value, unit = re.search(rf"^\s+{q}%\s+([\d.]+)(us|ms|s)$", out, re.MULTILINE).groups()  # type: ignore[union-attr]
        latency[q] = float(value) * UNITS[unit]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = f", {non_2xx.group(1)} non-2xx/3xx" if non_2xx else ""
    return f"{rate:8,.0f} req/s  p50 {latency['50']:6.1f} ms  p99 {latency['99']:6.1f} ms{errors}"


async def run_python(url: str, connections: int, seconds: int, headers: dict[str, str]) -> str:
    timings: list[float] = []
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=connections)
    async with httpx.AsyncClient(limits=limits, headers=headers) as http:

        async def worker() -> None:
            while time.monotonic() < deadline:
                started = time.perf_counter()
                (await http.get(url)).raise_for_status()
                timings.append((time.perf_counter() - started) * 1000)

        await asyncio.gather(*(worker() for _ in range(connections)))
    timings.sort()
    return (
        f"{len(timings) / seconds:8,.0f} req/s  p50 {statistics.median(timings):6.1f} ms  "
        f"p99 {pct(timings, 0.99):6.1f} ms  (python client: slower than the service)"
    )


async def load_campaign(kafka: str, child: Child, artifacts: int) -> str:
    from aiokafka import AIOKafkaProducer  # noqa: PLC0415 - only here

    campaign = f"viewers-{uuid.uuid4().hex[:6]}"
    producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all")
    await producer.start()
    try:
        await producer.send(
            child.topics["lifecycle"],
            event("campaign.created", {"campaign_id": campaign, "name": "Many viewers"}),
            key=campaign.encode(),
        )
        for n in range(artifacts):
            version = f"{campaign}.a{n:02d}.v1"
            await producer.send(
                child.topics["artifact"],
                event(
                    "campaign.artifact.generated",
                    {
                        "campaign_id": campaign,
                        "artifact_id": f"{campaign}.a{n:02d}",
                        "artifact_type": "copy",
                        "version_id": version,
                        "content": {"headline": f"take {n}"},
                    },
                ),
                key=campaign.encode(),
            )
            await producer.send(
                child.topics["audit"],
                event(
                    "campaign.audit.completed",
                    {"campaign_id": campaign, "version_id": version, "outcome": "pass"},
                ),
                key=campaign.encode(),
            )
        await producer.flush()
    finally:
        await producer.stop()
    return campaign


async def bench(args: argparse.Namespace) -> None:
    wrk = ensure_wrk()
    with servers() as (kafka, mongo):
        cached = Child(kafka, mongo)
        children = {"cached": cached}
        for name, extra in (
            ("uncached", {"SNAPSHOT_CACHE_ENTRIES": "0"}),
            ("memory", {"SNAPSHOT_CACHE_SECONDS": "1"}),
        ):
            child = Child(kafka, mongo)
            child.topics = cached.topics
            child.env = {**cached.env, "HTTP_PORT": str(child.port), **extra}
            children[name] = child
        try:
            for child in children.values():
                await child.start()
            campaign = await load_campaign(kafka, cached, args.artifacts)
            path = f"/campaigns/{campaign}/snapshot"
            expected = 1 + 2 * args.artifacts
            async with httpx.AsyncClient() as http:
                for _ in range(600):
                    answer = await http.get(f"{cached.url}{path}")
                    if answer.status_code == 200 and answer.json()["revision"] >= expected:
                        break
                    await asyncio.sleep(0.1)
                etag = answer.headers["etag"]
            print(
                f"reads: campaign of {args.artifacts} artifacts, snapshot {len(answer.content):,} "
                f"bytes; {args.connections} connections, {args.seconds} s each, one service "
                f"process per path ({'wrk' if wrk else 'python client'})",
                flush=True,
            )
            runs = [
                ("uncached (MongoDB every read)", children["uncached"], {}),
                ("cached (revision check + memory)", cached, {}),
                ("memory (SNAPSHOT_CACHE_SECONDS=1)", children["memory"], {}),
                ("If-None-Match -> 304 (cached)", cached, {"If-None-Match": etag}),
            ]
            for label, child, headers in runs:
                url = f"{child.url}{path}"
                if wrk:
                    figures = run_wrk(wrk, url, args.connections, args.seconds, headers)
                else:
                    figures = await run_python(url, args.connections, args.seconds, headers)
                print(f"  {label:36} {figures}", flush=True)
        finally:
            for child in children.values():
                child.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.reads")
    parser.add_argument("--artifacts", type=int, default=20)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--seconds", type=int, default=10)
    uvloop.run(bench(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
