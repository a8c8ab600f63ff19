"""Health that tells the truth: readiness within its budget, lag, and a progress watchdog.

- Readiness (GET /readyz): started and not stopping, and every dependency check answering
  True; the checks run concurrently, each cut off at READINESS_TIMEOUT_SECONDS (below the
  probe's own timeout), and the answer is reused for READINESS_CACHE_SECONDS so that probes
  from several sources do not multiply the pings.
- Lag (`ledger_consumer_lag{topic,partition}`): for each assigned input partition, the end
  offset minus the consumer's position, measured every CONSUMER_LAG_INTERVAL_SECONDS.
- Liveness (GET /healthz): fails while the watchdog says the consumer is stalled: partitions
  assigned, records waiting (lag above zero, or a batch in flight) and nothing committed for
  WATCHDOG_STALL_SECONDS. A consumer with nothing to do is never stalled.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import structlog
from aiokafka import TopicPartition
from aiokafka.errors import IllegalStateError, KafkaError

from service.app import telemetry

log = structlog.get_logger(__name__)

Check = Callable[[], Awaitable[bool]]
Clock = Callable[[], float]


class Watchdog:
    """Whether the consumer makes progress. Fed by the consumer (`busy`, `progressed`) and by
    the lag monitor (`observe`); read by liveness (`stalled`)."""

    def __init__(self, stall_seconds: float, clock: Clock = time.monotonic) -> None:
        self.stall_seconds = stall_seconds
        self.clock = clock
        self.last_progress = clock()
        self.busy_since: float | None = None
        self.assigned = 0
        self.lag = 0

    def busy(self) -> None:
        """A batch was handed to the processor (kept until one is committed)."""
        if self.busy_since is None:
            self.busy_since = self.clock()

    def progressed(self) -> None:
        """A batch was stored, published and committed."""
        self.last_progress = self.clock()
        self.busy_since = None

    def observe(self, assigned: int, lag: int) -> None:
        self.assigned = assigned
        self.lag = lag
        if assigned == 0 or (lag == 0 and self.busy_since is None):
            self.last_progress = self.clock()  # nothing waiting: idle is not stalled
        self.publish()

    def stalled(self) -> bool:
        waiting = self.lag > 0 or self.busy_since is not None
        return self.assigned > 0 and waiting and self.since_progress() > self.stall_seconds

    def since_progress(self) -> float:
        return max(0.0, self.clock() - self.last_progress)

    def publish(self) -> None:
        telemetry.SECONDS_SINCE_PROGRESS.set(self.since_progress())
        telemetry.CONSUMER_STALLED.set(1 if self.stalled() else 0)

    def state(self) -> dict[str, Any]:
        return {
            "stalled": self.stalled(),
            "assigned_partitions": self.assigned,
            "lag": self.lag,
            "seconds_since_progress": round(self.since_progress(), 1),
            "stall_seconds": self.stall_seconds,
        }


class LagMonitor:
    """Measures the lag of the partitions assigned to this instance's consumer.

    `consumer` returns the running aiokafka consumer (None before start and after stop).
    `fetched_ahead` gives a partition's first record fetched but not yet handed to a batch
    (None when none is): the lag counts from there, not from the consumer's position.
    """

    def __init__(
        self,
        consumer: Callable[[], Any],
        watchdog: Watchdog,
        *,
        fetched_ahead: Callable[[TopicPartition], int | None] = lambda tp: None,
        timeout: float = 10.0,
    ) -> None:
        self.consumer = consumer
        self.watchdog = watchdog
        self.fetched_ahead = fetched_ahead
        self.timeout = timeout
        self.lag: dict[tuple[str, int], int] = {}

    async def sample(self) -> dict[tuple[str, int], int]:
        consumer = self.consumer()
        assigned: set[TopicPartition] = set(consumer.assignment()) if consumer else set()
        lag: dict[tuple[str, int], int] = {}
        if assigned:
            async with asyncio.timeout(self.timeout):
                ends = await consumer.end_offsets(sorted(assigned))
                for tp in sorted(assigned):
                    try:
                        position = await consumer.position(tp)
                    except IllegalStateError:
                        continue  # revoked meanwhile (a rebalance)
                    ahead = self.fetched_ahead(tp)
                    position = position if ahead is None else min(position, ahead)
                    lag[(tp.topic, tp.partition)] = max(0, ends[tp] - position)
        for gone in self.lag.keys() - lag.keys():
            with contextlib.suppress(KeyError):  # another instance in this process removed it
                telemetry.CONSUMER_LAG.remove(gone[0], str(gone[1]))
        for (topic, partition), value in lag.items():
            telemetry.CONSUMER_LAG.labels(topic, str(partition)).set(value)
        telemetry.ASSIGNED_PARTITIONS.set(len(lag))
        self.lag = lag
        self.watchdog.observe(len(lag), sum(lag.values()))
        return lag

    async def run_forever(self, interval: float) -> None:
        while True:
            try:
                await self.sample()
            except (KafkaError, TimeoutError) as error:
                log.warning("consumer_lag_unavailable", error=str(error) or type(error).__name__)
                self.watchdog.publish()
            except Exception:
                log.exception("consumer_lag_failed")  # never take the service down
                self.watchdog.publish()
            await asyncio.sleep(interval)


class Health:
    """Readiness and liveness of one instance.

    `checks` are the dependencies this role needs (MongoDB; Kafka for a consumer), reported
    by name beside `gate` (True once started, False from the first moment of a stop).
    """

    def __init__(
        self,
        checks: Mapping[str, Check],
        *,
        gate: str = "consuming",
        timeout: float = 2.0,
        cache_seconds: float = 1.0,
        watchdog: Watchdog | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.checks = dict(checks)
        self.gate = gate
        self.timeout = timeout
        self.cache_seconds = cache_seconds
        self.watchdog = watchdog
        self.clock = clock
        self.started = False
        self.stopping = False
        self._answer: dict[str, bool] | None = None
        self._answered_at = 0.0
        self._lock = asyncio.Lock()

    async def ready(self) -> tuple[bool, dict[str, bool]]:
        async with self._lock:  # concurrent probes share one round of checks
            if self._answer is None or self.clock() - self._answered_at >= self.cache_seconds:
                names = list(self.checks)
                results = await asyncio.gather(*(self._run(n, self.checks[n]) for n in names))
                self._answer = dict(zip(names, results, strict=True))
                self._answered_at = self.clock()
            answer = self._answer
        # The gate is never cached: a stop takes the instance out of rotation at once.
        checks = {self.gate: self.started and not self.stopping, **answer}
        return all(checks.values()), checks

    async def _run(self, name: str, check: Check) -> bool:
        try:
            async with asyncio.timeout(self.timeout):
                return bool(await check())
        except TimeoutError:
            log.warning("readiness_check_timeout", check=name, seconds=self.timeout)
        except Exception as error:
            log.warning("readiness_check_failed", check=name, error=str(error))
        return False

    def live(self) -> tuple[bool, dict[str, Any]]:
        if self.watchdog is None:
            return True, {}
        state = self.watchdog.state()
        self.watchdog.publish()
        return not state["stalled"], state
