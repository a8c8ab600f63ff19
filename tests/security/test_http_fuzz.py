"""Schemathesis against the read API's own /openapi.json: no input makes it answer 5xx.

The service runs in-process (running_ledger) and is served by uvicorn on a loopback port in
the test's event loop; schemathesis drives it over real HTTP from a worker thread (its
calls are synchronous). Not `schemathesis.openapi.from_asgi`: that runs the app, lifespan
included, in schemathesis' own event loop thread, while the service's MongoDB and Kafka
clients belong to the loop that started them.

One campaign has data behind every GET route (versions, an audit, feedback, a run), and
besides free (positive and negative) inputs, every operation is also fuzzed with its path
pinned to that campaign's real ids, so the data-bearing code paths are reached too.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import hypothesis
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Ok
from schemathesis.generation import GenerationMode

from tests.events import cloud_event
from tests.integration.harness import Ledger, eventually, isolated_settings, new_id, running_ledger
from tests.security.helpers import SecureKafka, generated

MAX_EXAMPLES = 30  # per operation, spread over free, negative and pinned inputs


@contextlib.asynccontextmanager
async def served(ledger: Ledger) -> AsyncIterator[str]:
    """The in-process app on a real socket; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    # lifespan off: running_ledger already runs it. Signals stay pytest's.
    config = uvicorn.Config(ledger.service.app, lifespan="off", log_config=None, access_log=False)
    server = uvicorn.Server(config)
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    task = asyncio.create_task(server.serve(sockets=[sock]))

    async def started() -> bool:
        return server.started

    try:
        await eventually(started, timeout=20)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


async def _campaign_with_everything(ledger: Ledger) -> dict[str, str]:
    campaign, artifact, run = new_id("c"), new_id("a"), new_id("r")
    v1, v2 = f"{artifact}.v1", f"{artifact}.v2"
    feedback = cloud_event(
        "campaign.feedback.submitted",
        {
            "campaign_id": campaign,
            "artifact_id": artifact,
            "version_id": v1,
            "feedback_text": "Shorter, please.",
            "tags": ["tone"],
        },
    )
    events = [
        cloud_event("campaign.created", {"campaign_id": campaign, "name": "Fuzzed"}),
        cloud_event("campaign.run.started", {"campaign_id": campaign, "run_id": run}),
        generated(campaign, artifact, 1, version_id=v1, run_id=run),
        cloud_event(
            "campaign.audit.completed",
            {
                "campaign_id": campaign,
                "version_id": v1,
                "outcome": "conditional",
                "category_scores": {"tone": {"score": 61}},
            },
        ),
        feedback,
        generated(
            campaign, artifact, 2, version_id=v2, parent_version_id=v1, feedback_id=feedback["id"]
        ),
        cloud_event(
            "campaign.run.completed",
            {"campaign_id": campaign, "run_id": run, "status": "completed"},
        ),
    ]
    for event in events:
        await ledger.send(event)

    async def complete() -> bool:
        answer = await ledger.snapshot(campaign)
        if answer.status_code != 200:
            return False
        body = answer.json()
        counts = (body["counts"][k] for k in ("versions", "audit_reports", "iteration_logs"))
        return tuple(counts) == (2, 1, 1) and body["runs"][0]["status"] == "completed"

    await eventually(complete, timeout=60)
    return {"campaign_id": campaign, "artifact_id": artifact, "version_id": v1}


def _fuzz_operation(operation: Any, ids: dict[str, str]) -> tuple[int, str | None]:
    """Fuzz one operation; return how many requests it made and its failure, if any."""
    names = {parameter.name for parameter in operation.path_parameters}
    pinned = {name: value for name, value in ids.items() if name in names}
    strategies = [operation.as_strategy(), operation.as_strategy(GenerationMode.NEGATIVE)]
    if pinned:
        strategies.append(operation.as_strategy(path_parameters=pinned))
    calls = 0

    # Derandomized: the same examples every run, so the suite stays deterministic.
    @hypothesis.settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=st.one_of(strategies))
    def check(case: Any) -> None:
        nonlocal calls
        calls += 1
        case.call_and_validate(checks=[not_a_server_error], timeout=30)

    try:
        check()
    except (Exception, FailureGroup) as error:  # FailureGroup is a BaseExceptionGroup
        return calls, str(error)[:3000]
    return calls, None


def _fuzz(schema_url: str, ids: dict[str, str]) -> dict[str, str]:
    """Fuzz every GET operation; return the failures by operation (empty when none)."""
    # The SSE streams never end by design (tests/integration/test_streams.py covers them).
    schema = (
        schemathesis.openapi.from_url(schema_url)
        .include(method="GET")
        .exclude(path_regex=r"/stream$")
    )
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result  # the schema itself is valid
        operations.append(result.ok())
    assert len(operations) >= 7, [op.label for op in operations]
    failures: dict[str, str] = {}
    calls: dict[str, int] = {}
    for operation in operations:
        calls[operation.label], failure = _fuzz_operation(operation, ids)
        if failure is not None:
            failures[operation.label] = failure
    # Not vacuous: every operation was really called, many times.
    assert all(count >= 10 for count in calls.values()), calls
    return failures


@dataclass(frozen=True)
class Target:
    ledger: Ledger
    base_url: str
    ids: dict[str, str]


@pytest.fixture(scope="module")
async def target(secure_kafka: SecureKafka, mongodb_uri: str) -> AsyncIterator[Target]:
    settings = isolated_settings(secure_kafka.plain, mongodb_uri, api_tokens=None)
    async with running_ledger(settings) as ledger:
        ids = await _campaign_with_everything(ledger)
        async with served(ledger) as base_url:
            yield Target(ledger, base_url, ids)


# schemathesis' own strategies draw from `random`; not ours to fix.
@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")
async def test_no_get_route_answers_5xx(target: Target) -> None:
    failures = await asyncio.to_thread(_fuzz, f"{target.base_url}/openapi.json", target.ids)
    assert not failures, "\n\n".join(f"{op}:\n{text}" for op, text in failures.items())


# Cursors (`after`) a client could send that the fuzzer is unlikely to hit: each must be
# refused as a bad request (4xx), never crash the handler (5xx).
@pytest.mark.parametrize(
    ("route", "after"),
    [
        pytest.param("versions", "²"),  # str.isdigit() says yes, int() says no
        pytest.param("iterations", "².x"),
        pytest.param("iterations", "999999999999999.x"),  # past year 9999
        pytest.param("versions", "not-a-cursor"),
        pytest.param("iterations", "not-a-cursor"),
        pytest.param("versions", "1" * 19),
    ],
)
async def test_a_malformed_cursor_is_a_client_error(target: Target, route: str, after: str) -> None:
    campaign, artifact = target.ids["campaign_id"], target.ids["artifact_id"]
    path = {
        "versions": f"/campaigns/{campaign}/artifacts/{artifact}/versions",
        "iterations": f"/campaigns/{campaign}/iterations",
    }[route]
    async with httpx.AsyncClient(base_url=target.base_url, trust_env=False) as client:
        answer = await client.get(path, params={"after": after})
    assert 400 <= answer.status_code < 500, (answer.status_code, answer.text[:200])
