"""Fixtures of the chaos suite: an isolated deployment and the service processes of a test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from tests.chaos.processes import Deployment, ServiceProcess


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    if report.when == "call":
        item.stash[_FAILED] = report.failed
    return report


_FAILED = pytest.StashKey[bool]()


@pytest.fixture
async def deployment(kafka_bootstrap: str, mongodb_uri: str) -> AsyncIterator[Deployment]:
    """Own topics (3 partitions each), consumer group and database; the database is dropped."""
    deployed = Deployment.isolated(kafka_bootstrap, mongodb_uri)
    await deployed.create_topics()
    yield deployed
    await deployed.drop()


@pytest.fixture
async def service_factory(
    deployment: Deployment, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Callable[[str], ServiceProcess]]:
    """Makes `ServiceProcess`es of the test's deployment; stops them all afterwards.

    A failed test gets the tail of every instance's log in its report.
    """
    made: list[ServiceProcess] = []

    def make(name: str = "ledger") -> ServiceProcess:
        process = ServiceProcess(deployment, tmp_path, name)
        made.append(process)
        return process

    yield make
    for process in made:
        await process.stop_now()
    if request.node.stash.get(_FAILED, False):
        for process in made:
            print(f"\n----- {process.name} log ({process.log_file}) -----\n{process.log_tail(80)}")
