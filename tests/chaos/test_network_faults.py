"""Slow and broken networks between the service and Kafka and MongoDB (not killed processes).

The service (a real `python -m service serve`) reaches Kafka and MongoDB only through
Toxiproxy (tests/chaos/network.py); the test's load and its checks go to the servers
directly. Each scenario runs a steady mixed load (tests/chaos/processes.py `MixedStream`:
versions, audits sent before their version, failed audits retried, feedback, lifecycle, runs,
redeliveries) plus a few hostile records, breaks the network for a while, heals it, waits
until everything is committed, and then does the chaos suite's full accounting
(tests/chaos/test_never_lose.py `verify`: every event stored once, no orphans, version
numbers without gaps, every revision published, in order, the last one right everywhere)
and counts the dead letters: exactly the hostile records, with their reasons; any other is
one the fault caused, and a network fault is never the producer's fault.

Each test adds one row to the figures table (printed, and kept in network-faults.md under
pytest's base temp dir): recovery (fault end to the first snapshot published after it), lag
back to normal, lost, duplicated, dead letters caused, restarts.

Fault lengths are shortened for CI where the full ones would make the suite too long; set
NETWORK_FAULTS_FULL=1 for the full ones (60 s latency, 45 s Kafka away, 60 s loss).
`python -m bench.soak` cycles all of them for 30 minutes.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.chaos.network import (
    KAFKA_PROXY,
    MONGO_PROXY,
    CutMode,
    DeadLetters,
    Hostile,
    Monitor,
    NetworkRig,
    ScenarioResult,
    dead_letters,
    large_campaigns,
    network_rig,
)
from tests.chaos.processes import MixedStream, Outgoing, Sender, ServiceProcess
from tests.chaos.test_never_lose import Findings, settle, verify

FULL = os.environ.get("NETWORK_FAULTS_FULL", "") == "1"
RATE = 35.0  # events per second of the steady load (the machine is shared)
READINESS_TIMEOUT = 2.0  # the service's default READINESS_TIMEOUT_SECONDS
READINESS_CACHE = 1.0  # and READINESS_CACHE_SECONDS
EVENTS_PER_CAMPAIGN = 60  # about, in a MixedStream of 5 versions

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
async def rig(
    mongodb_uri: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[NetworkRig]:
    async with network_rig(tmp_path_factory.mktemp("network"), mongodb_uri) as started:
        yield started


@pytest.fixture(scope="module")
def figures(
    tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
) -> Iterator[Path]:
    """The table's file; the whole table goes to the terminal after the last scenario."""
    path = tmp_path_factory.getbasetemp() / "network-faults.md"
    path.write_text(ScenarioResult.HEADER + "\n")
    yield path
    reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
    capture = pytestconfig.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():  # teardown output is captured otherwise
            reporter.write_line(f"\n\nnetwork faults ({path}):\n{path.read_text()}")


@dataclass
class Run:
    """What a scenario leaves for its test to judge."""

    result: ScenarioResult
    found: Findings
    letters: DeadLetters
    monitor: Monitor
    service: ServiceProcess
    fault_start: float
    fault_end: float

    def note(self, text: str) -> None:
        self.result.notes = f"{self.result.notes}; {text}" if self.result.notes else text


Action = Callable[[], Awaitable[None]]


async def run_scenario(
    rig: NetworkRig,
    tmp_path: Path,
    figures: Path,
    *,
    name: str,
    fault_seconds: float,
    apply: Action,
    during: Callable[[float], Awaitable[str]] | None = None,
    settings: dict[str, str] | None = None,
    cut_commits: bool = False,
    strict_order: bool = True,
    prelude: Sequence[Outgoing] = (),
    extra: Sequence[Outgoing] = (),
    before: float = 8.0,
    after: float = 12.0,
) -> Run:
    """Steady load; `apply` at `before` s; `during` (or a sleep) for `fault_seconds`; heal;
    load for `after` s more; settle; the full accounting."""
    # topic names take only [A-Za-z0-9._-]: the scenario's number
    deployment = rig.deployment(
        f"net{name.split(maxsplit=1)[0]}", settings, cut_commits=cut_commits
    )
    await deployment.create_topics()
    service = ServiceProcess(deployment, tmp_path, "ledger")
    sender = Sender(deployment)
    hostile = Hostile(deployment)
    total = before + fault_seconds + after
    mixed = MixedStream(campaigns=max(4, int(RATE * total / EVENTS_PER_CAMPAIGN)), span=total)
    events = _interleave(mixed.events, list(extra), random.Random(mixed.seed))
    monitor: Monitor | None = None
    fault_start = fault_end = 0.0
    notes = ""
    try:
        await service.start()
        if prelude:
            await sender.send_all(prelude, duration=min(10.0, len(prelude) / 100))
        monitor = Monitor(deployment, service).start()

        async def fault() -> None:
            nonlocal fault_start, fault_end, notes
            await hostile.send()
            await asyncio.sleep(before)
            fault_start = time.monotonic()
            await apply()
            try:
                if during is not None:
                    notes = await during(fault_seconds)
                else:
                    await asyncio.sleep(fault_seconds / 2)
                    await hostile.send()  # refused while the network is broken, too
                    await asyncio.sleep(fault_seconds / 2)
            finally:
                await rig.heal()
                fault_end = time.monotonic()

        faulting = asyncio.create_task(fault())
        try:
            await sender.send_all(events, duration=total)
            await faulting
        finally:
            faulting.cancel()
            await rig.heal()
            await sender.close()
        await settle(deployment, [service], timeout=240)
        await monitor.stop()
        found = await verify(deployment, sender.sent, service, strict_order=strict_order)
        letters = await dead_letters(deployment, hostile.sent)
    finally:
        if monitor is not None:
            await monitor.stop()
        await service.stop_now()
    died = sum(1 for s in monitor.samples if not s.alive)
    result = ScenarioResult(
        scenario=name,
        fault_seconds=fault_end - fault_start,
        events=len(sender.sent) + len(prelude) + len(hostile.sent),
        recovery=monitor.recovery(fault_end),
        caught_up=monitor.caught_up(fault_start, fault_end),
        lost=found.lost,
        duplicated=found.duplicated,
        dead_letters_caused=len(letters.caused),
        restarts=service.starts - 1 + (1 if died else 0),
        notes="; ".join(
            part
            for part in (
                notes,
                monitor.effect(fault_start, fault_end),
                f"republished revisions {found.republished}" if found.republished else "",
                f"dead letters sent again {letters.repeated}" if letters.repeated else "",
            )
            if part
        ),
    )
    return Run(result, found, letters, monitor, service, fault_start, fault_end)


def _interleave(main: list[Outgoing], extra: list[Outgoing], rng: random.Random) -> list[Outgoing]:
    """`extra` spread through `main`, each list keeping its own order."""
    if not extra:
        return main
    out: list[Outgoing] = []
    i = j = 0
    while i < len(main) or j < len(extra):
        left, right = len(main) - i, len(extra) - j
        if right and (not left or rng.random() < right / (left + right)):
            out.append(extra[j])
            j += 1
        else:
            out.append(main[i])
            i += 1
    return out


def record_and_judge(run: Run, figures: Path) -> None:
    """The scenario's row into the table (pass or fail), then what every scenario must end
    with."""
    found, letters, result = run.found, run.letters, run.result
    with figures.open("a") as table:
        table.write(result.row() + "\n")
    print(f"\n{ScenarioResult.HEADER}\n{result.row()}\n(table so far: {figures})")
    problems = found.report() if not found.clean else ""
    assert found.clean, f"{result.scenario}: the accounting failed:\n{problems}"
    assert not letters.caused, f"{result.scenario}: dead letters the fault caused: {letters.caused}"
    assert not letters.missing, (
        f"{result.scenario}: hostile records not dead-lettered: {letters.missing}"
    )
    assert not letters.wrong_reason, f"{result.scenario}: wrong reasons {letters.wrong_reason}"
    assert result.restarts == 0, f"{result.scenario}: the service restarted or died"
    assert result.recovery is not None, f"{result.scenario}: no snapshot published after the fault"


def _readiness_drop(run: Run) -> float | None:
    """Seconds from the fault's start to the first /readyz that is not 200."""
    for sample in run.monitor.between(run.fault_start, run.fault_end):
        if sample.readyz != 200:
            return sample.at - run.fault_start
    return None


def _seconds(full: float, ci: float) -> float:
    return full if FULL else ci


# =========================================================================== scenarios


async def test_mongo_latency(rig: NetworkRig, tmp_path: Path, figures: Path) -> None:
    """Every MongoDB round trip 300 ms ± 200 ms: slower, nothing else."""
    run = await run_scenario(
        rig,
        tmp_path,
        figures,
        name="1 MongoDB latency 300±200 ms",
        fault_seconds=_seconds(60, 30),
        apply=lambda: rig.api.latency(MONGO_PROXY, 300, 200),
    )
    record_and_judge(run, figures)


async def test_mongo_reset_during_commit(rig: NetworkRig, tmp_path: Path, figures: Path) -> None:
    """Connections reset at `commitTransaction`: half before the server sees it, half after
    it committed and before the answer (the driver cannot know whether it committed)."""
    cuts_wanted = 10

    async def cut(seconds: float) -> str:
        deadline = time.monotonic() + seconds
        modes: tuple[CutMode, CutMode] = ("before", "after")
        n = 0
        while n < cuts_wanted and time.monotonic() < deadline:
            if await rig.cutter.cut_next(
                modes[n % 2], timeout=max(0.1, deadline - time.monotonic())
            ):
                n += 1
                await asyncio.sleep(random.uniform(0.5, 2.0))
        return (
            f"{rig.cutter.cuts['before']} commits cut before the server, "
            f"{rig.cutter.cuts['after']} after it committed"
        )

    rig.cutter.cuts.clear()
    run = await run_scenario(
        rig,
        tmp_path,
        figures,
        name="2 MongoDB reset during commit",
        fault_seconds=30,
        apply=_nothing,
        during=cut,
        cut_commits=True,
    )
    record_and_judge(run, figures)
    assert rig.cutter.cuts["before"] >= 3 and rig.cutter.cuts["after"] >= 3, (
        f"too few commits were cut to judge: {dict(rig.cutter.cuts)}"
    )


async def test_mongo_unreachable(rig: NetworkRig, tmp_path: Path, figures: Path) -> None:
    """MongoDB refused for 45 s. /readyz says so within its timeout; /healthz stays up until
    the watchdog's limit (lowered to 30 s here, so the outage crosses it) and fails after it,
    as a liveness probe would see; the service catches up once MongoDB is back."""
    stall_seconds = 30.0
    run = await run_scenario(
        rig,
        tmp_path,
        figures,
        name="3 MongoDB unreachable",
        fault_seconds=45,
        apply=lambda: _disable(rig, MONGO_PROXY),
        settings={
            "WATCHDOG_STALL_SECONDS": str(stall_seconds),
            "CONSUMER_LAG_INTERVAL_SECONDS": "2",
        },
    )
    during = run.monitor.between(run.fault_start, run.fault_end)
    dropped = _readiness_drop(run)
    slowest = max(s.readyz_seconds for s in during)
    first_unhealthy = next((s.at - run.fault_start for s in during if s.healthz != 200), None)
    healthy_after = next(
        (
            s.at - run.fault_end
            for s in run.monitor.samples
            if s.at > run.fault_end and s.healthz == 200
        ),
        None,
    )
    run.note(
        f"/readyz 503 after {_shown(dropped)} (slowest answer {slowest:.1f} s); /healthz 503 "
        f"after {_shown(first_unhealthy)} (watchdog limit {stall_seconds:.0f} s), 200 again "
        f"{_shown(healthy_after)} after the fault"
    )
    record_and_judge(run, figures)
    assert dropped is not None and dropped <= READINESS_TIMEOUT + READINESS_CACHE + 1.5, (
        f"/readyz took {dropped} s to say MongoDB is away"
    )
    assert slowest <= READINESS_TIMEOUT + 1.0, f"/readyz answered in {slowest:.1f} s"
    assert first_unhealthy is not None, "/healthz never failed although the watchdog limit passed"
    # the watchdog counts from the last commit, a moment before the fault: some slack
    assert first_unhealthy >= stall_seconds - 8.0, (
        f"/healthz failed after {first_unhealthy:.1f} s, before the watchdog's {stall_seconds} s"
    )
    assert healthy_after is not None, "/healthz never came back after MongoDB did"


async def test_kafka_unreachable(rig: NetworkRig, tmp_path: Path, figures: Path) -> None:
    """Kafka refused to the service (consumer and publisher) for 45 s, then back."""
    run = await run_scenario(
        rig,
        tmp_path,
        figures,
        name="4 Kafka unreachable",
        fault_seconds=_seconds(45, 30),
        apply=lambda: _disable(rig, KAFKA_PROXY),
        strict_order=False,
    )
    dropped = _readiness_drop(run)
    run.note(f"/readyz 503 after {_shown(dropped)}")
    record_and_judge(run, figures)


async def test_kafka_packet_loss(rig: NetworkRig, tmp_path: Path, figures: Path) -> None:
    """About 20 % loss on the Kafka link (approximated: dev.toxiproxy `lossy_link`)."""
    run = await run_scenario(
        rig,
        tmp_path,
        figures,
        name="5 Kafka ~20% loss (approximated)",
        fault_seconds=_seconds(60, 30),
        apply=lambda: rig.api.lossy_link(KAFKA_PROXY, 0.2),
        strict_order=False,
    )
    record_and_judge(run, figures)


async def test_kafka_bandwidth_large_snapshots(
    rig: NetworkRig, tmp_path: Path, figures: Path
) -> None:
    """64 KB/s on the Kafka link while snapshots are large (campaigns of 200 artifacts)."""
    artifacts = 200
    big, follow = large_campaigns(4, artifacts, follow_up=500, seed=random.randrange(1 << 30))
    run = await run_scenario(
        rig,
        tmp_path,
        figures,
        name=f"6 Kafka 64 KB/s, {artifacts} artifacts per campaign",
        fault_seconds=_seconds(60, 30),
        apply=lambda: rig.api.bandwidth(KAFKA_PROXY, 64),
        prelude=big,
        extra=follow,
        strict_order=False,
    )
    record_and_judge(run, figures)


async def test_mongo_black_hole(rig: NetworkRig, tmp_path: Path, figures: Path) -> None:
    """The MongoDB link stops answering without closing for 30 s."""
    run = await run_scenario(
        rig,
        tmp_path,
        figures,
        name="7 MongoDB black hole",
        fault_seconds=30,
        apply=lambda: rig.api.black_hole(MONGO_PROXY),
    )
    dropped = _readiness_drop(run)
    run.note(f"/readyz 503 after {_shown(dropped)}")
    record_and_judge(run, figures)
    assert dropped is not None and dropped <= READINESS_TIMEOUT + READINESS_CACHE + 1.5, (
        f"/readyz took {dropped} s to say MongoDB does not answer"
    )


# =========================================================================== helpers


def _shown(seconds: float | None) -> str:
    return "never" if seconds is None else f"{seconds:.1f} s"


async def _nothing() -> None:
    return None


async def _disable(rig: NetworkRig, proxy: str) -> None:
    await rig.api.set_enabled(proxy, False)
