"""The soak: the service under a steady 100 events/s for 30 minutes while network faults
cycle between it and Kafka and MongoDB (not in CI; `python -m bench.soak --minutes 30`).

Everything runs locally: a MongoDB-compatible server, a broker of its own, Toxiproxy in front
of both (tests/chaos/network.py), the service as a real process reaching them only through
the proxies, MongoDB behind the commit cutter too. The faults of the network-fault scenarios
come one after the other at their full lengths, with a quiet minute after each: MongoDB
300 ± 200 ms for 60 s, commits reset (10, before and after the server applied them),
MongoDB refused for 45 s, Kafka refused for 45 s, ~20 % loss on the Kafka link for 60 s,
Kafka at 64 KB/s for 60 s, MongoDB black-holed for 30 s.

Every minute: the service's RSS and open sockets, held events, lag, events sent, snapshots
published. After each fault: when the first snapshot after it was published and when the
lag was back to normal. At the end, once everything is committed, the chaos suite's full
accounting over every event sent, the dead letters against the hostile records sent, and the
write reliability: events applied ÷ valid events sent (it must be 100 %).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from dev.servers.common import free_ports
from dev.servers.mongo import MongoServer
from tests.chaos.network import (
    KAFKA_PROXY,
    MONGO_CUT_PROXY,
    DeadLetters,
    Hostile,
    Monitor,
    NetworkRig,
    dead_letters,
    network_rig,
)
from tests.chaos.processes import (
    Deployment,
    KafkaProbe,
    MixedStream,
    Model,
    Sender,
    ServiceProcess,
)
from tests.chaos.test_never_lose import Findings, settle, verify
from tests.servers import start_local

# after each fault, before the next (--quiet)
QUIET_SECONDS = 60.0


@dataclass(frozen=True)
class Fault:
    name: str
    seconds: float
    apply: Callable[[NetworkRig], Awaitable[None]]
    during: Callable[[NetworkRig, float], Awaitable[None]] | None = None


async def _cut_commits(rig: NetworkRig, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    for n in range(10):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        await rig.cutter.cut_next("before" if n % 2 == 0 else "after", timeout=left)
        await asyncio.sleep(1.0)
    await asyncio.sleep(max(0.0, deadline - time.monotonic()))


async def _noop(rig: NetworkRig) -> None:
    return None


FAULTS = (
    Fault("MongoDB latency 300±200 ms", 60, lambda r: r.api.latency(MONGO_CUT_PROXY, 300, 200)),
    Fault("MongoDB reset during commit", 30, _noop, _cut_commits),
    Fault("MongoDB unreachable", 45, lambda r: _disabled(r, MONGO_CUT_PROXY)),
    Fault("Kafka unreachable", 45, lambda r: _disabled(r, KAFKA_PROXY)),
    Fault("Kafka ~20% loss (approximated)", 60, lambda r: r.api.lossy_link(KAFKA_PROXY, 0.2)),
    Fault("Kafka 64 KB/s", 60, lambda r: r.api.bandwidth(KAFKA_PROXY, 64)),
    Fault("MongoDB black hole", 30, lambda r: r.api.black_hole(MONGO_CUT_PROXY)),
)


async def _disabled(rig: NetworkRig, proxy: str) -> None:
    await rig.api.set_enabled(proxy, False)


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _sockets(pid: int) -> int:
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            if os.readlink(fd).startswith("socket:"):
                count += 1
    return count


async def soak(minutes: float, rate: float, work_dir: Path, quiet: float = QUIET_SECONDS) -> int:
    (mongo_port,) = free_ports(1)
    mongo = await asyncio.to_thread(
        start_local, lambda: MongoServer(work_dir / "mongo", port=mongo_port, die_with_parent=True)
    )
    try:
        async with network_rig(work_dir, mongo.uri) as rig:
            return await _soak(rig, minutes, rate, work_dir, quiet)
    finally:
        await asyncio.to_thread(mongo.stop)


async def _soak(rig: NetworkRig, minutes: float, rate: float, work_dir: Path, quiet: float) -> int:
    deployment = rig.deployment("soak", cut_commits=True)
    await deployment.create_topics()
    service = await ServiceProcess(deployment, work_dir, "ledger").start()
    assert service.proc is not None
    pid = service.proc.pid
    sender, hostile, probe = Sender(deployment), Hostile(deployment), KafkaProbe(deployment)
    monitor = Monitor(deployment, service).start()
    began = time.monotonic()
    until = began + minutes * 60
    windows: list[tuple[str, float, float]] = []
    current: list[str] = ["-"]
    print(f"soak: {minutes:g} min at {rate:g} events/s; service log {service.log_file}")
    print("  min | fault now                        | RSS MB | sockets | held | lag   | sent")

    reporting = asyncio.create_task(
        _every_minute(deployment, probe, sender, pid, began=began, current=current)
    )
    faulting = asyncio.create_task(_cycle_faults(rig, until, windows, current, quiet))
    try:
        await _steady_load(sender, hostile, rate, until)
        await faulting
    finally:
        faulting.cancel()
        await rig.heal()
        await sender.close()
    try:
        settled = await settle(deployment, [service], timeout=900)
    except AssertionError as stalled:  # the accounting below still says what is missing
        print(f"not settled: {stalled}")
        settled = float("nan")
    reporting.cancel()
    await monitor.stop()
    await probe.close()
    found = await verify(deployment, sender.sent, service, strict_order=False)
    letters = await dead_letters(deployment, hostile.sent)
    expected, applied = await _reliability(deployment, Model(sender.sent))
    restarts = service.starts - 1 + sum(1 for s in monitor.samples if not s.alive)
    await service.stop_now()

    summary = Summary(
        windows, monitor, found, letters, len(hostile.sent), len(sender.sent), restarts
    )
    return summary.verdict(
        settled, began, {str(k): n for k, n in rig.cutter.cuts.items()}, expected, applied
    )


async def _steady_load(sender: Sender, hostile: Hostile, rate: float, until: float) -> None:
    """A new MixedStream every minute, `rate` events/s, and the hostile records again."""
    while time.monotonic() < until:
        span = min(60.0, until - time.monotonic())
        if span < 5:
            break
        stream = MixedStream(campaigns=max(2, int(rate * span / 60)), span=span)
        await hostile.send()
        await sender.send_all(stream.events, duration=span)


async def _cycle_faults(
    rig: NetworkRig,
    until: float,
    windows: list[tuple[str, float, float]],
    current: list[str],
    quiet: float,
) -> None:
    """Each fault in turn at its full length, a quiet minute after each."""
    index = 0
    await asyncio.sleep(quiet)
    while True:
        fault = FAULTS[index % len(FAULTS)]
        if time.monotonic() + fault.seconds + quiet / 2 > until:
            return
        current[0] = fault.name
        start = time.monotonic()
        await fault.apply(rig)
        try:
            if fault.during is not None:
                await fault.during(rig, fault.seconds)
            else:
                await asyncio.sleep(fault.seconds)
        finally:
            await rig.heal()
        windows.append((fault.name, start, time.monotonic()))
        current[0] = "-"
        index += 1
        await asyncio.sleep(quiet)


async def _every_minute(
    deployment: Deployment,
    probe: KafkaProbe,
    sender: Sender,
    pid: int,
    *,
    began: float,
    current: list[str],
) -> None:
    """RSS, open sockets, held events, lag and events sent, once a minute."""
    client = deployment.mongo()
    try:
        while True:
            await asyncio.sleep(60)
            held = await client[deployment.database].held_events.count_documents({})
            print(
                f"  {(time.monotonic() - began) / 60:3.0f} | {current[0]:32} "
                f"| {_rss_mb(pid):6.0f} | {_sockets(pid):7} | {held:4} "
                f"| {await probe.lag()!s:5} | {len(sender.sent)}",
                flush=True,
            )
    finally:
        await client.close()


@dataclass
class Summary:
    windows: list[tuple[str, float, float]]
    monitor: Monitor
    found: Findings
    letters: DeadLetters
    hostile: int
    sent: int
    restarts: int

    def verdict(
        self, settled: float, began: float, cuts: dict[str, int], expected: int, applied: int
    ) -> int:
        """Print the figures; 0 when the accounting is exact, else 1."""
        print(f"\nafter each fault (settled {settled:.0f} s after the load ended):")
        print("| fault | length | recovery (first new snapshot) | lag back to normal |")
        print("|---|---|---|---|")
        for name, start, end in self.windows:
            recovery, back = self.monitor.recovery(end), self.monitor.caught_up(start, end)
            print(f"| {name} | {end - start:.0f} s | {_s(recovery)} | {_s(back)} |")
        print(
            f"\nevents sent {self.sent} valid ({self.hostile} hostile) over "
            f"{(time.monotonic() - began) / 60:.1f} min, faults {len(self.windows)}, commits cut "
            f"{cuts}\n"
            f"lost {self.found.lost}, duplicated {self.found.duplicated}, orphaned "
            f"{self.found.orphaned}, wrong {self.found.wrong}, republished revisions "
            f"{self.found.republished}\n"
            f"dead letters: hostile refused as expected {self.letters.refused_as_expected}/"
            f"{self.hostile}, caused by faults {len(self.letters.caused)}, sent again "
            f"{self.letters.repeated}\n"
            f"service restarts {self.restarts}\n"
            f"write reliability: {applied} applied / {expected} valid events sent = "
            f"{100 * applied / max(expected, 1):.3f} %"
        )
        if not self.found.clean:
            print(self.found.report())
        for caused in self.letters.caused[:10]:
            print(f"  caused: {caused}")
        clean = (
            self.found.clean
            and not self.letters.caused
            and not self.letters.missing
            and self.restarts == 0
            and applied == expected
        )
        return 0 if clean else 1


async def _reliability(deployment: Deployment, model: Model) -> tuple[int, int]:
    """Distinct valid events sent, and how many of them the database holds the mark of."""
    client = deployment.mongo()
    stored: dict[str, int] = {}
    try:
        db = client[deployment.database]
        for name in ("processed_events", "versions"):
            async for row in await db[name].aggregate(
                [{"$group": {"_id": "$campaign_id", "n": {"$sum": 1}}}]
            ):
                stored[row["_id"]] = stored.get(row["_id"], 0) + row["n"]
    finally:
        await client.close()
    expected = sum(model.marks.values())
    applied = sum(min(stored.get(c, 0), n) for c, n in model.marks.items())
    return expected, applied


def _s(seconds: float | None) -> str:
    return "never" if seconds is None else f"{seconds:.1f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=100.0, help="events per second")
    parser.add_argument(
        "--quiet", type=float, default=QUIET_SECONDS, help="seconds between two faults"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ledger-soak-") as work:
        raise SystemExit(asyncio.run(soak(args.minutes, args.rate, Path(work), args.quiet)))


if __name__ == "__main__":
    main()
