"""One event's trace, from the agent that sent it to the dashboard that read its snapshot, as
the local Jaeger shows it (dev/jaeger.py and its trace view), in Debian's headless Chromium.

A generation agent (the OpenTelemetry SDK, its own service name) sends an artifact event with
its span's `traceparent`; the ledger consumes it with tracing on (OTEL_* variables only); a
dashboard continues the trace from the published snapshot's `traceparent` and reads the
snapshot over HTTP with it. The page must show all three services' spans in one trace (it
fails otherwise). It also takes a screenshot: into .cache/ by default;
`TRACE_SCREENSHOT=docs/trace.png make test` refreshes the README's.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from dev.jaeger import Jaeger
from tests.events import cloud_event
from tests.integration.harness import eventually, isolated_settings, running_ledger

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / os.environ.get("TRACE_SCREENSHOT", ".cache/trace.png")

if not CHROMIUM.exists() and not shutil.which("chromium"):
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the browser test: {CHROMIUM} is missing", pytrace=False)
    pytest.skip(
        f"Debian's chromium is not installed ({CHROMIUM}); `apt-get install chromium` "
        "(CI installs it and never skips)",
        allow_module_level=True,
    )

from playwright.async_api import async_playwright, expect  # noqa: E402

PROPAGATOR = TraceContextTextMapPropagator()


@pytest.fixture(scope="module")
def jaeger() -> Iterator[Jaeger]:
    with Jaeger() as running:
        yield running


def tracer(jaeger: Jaeger, service: str) -> tuple[TracerProvider, trace.Tracer]:
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    exporter = OTLPSpanExporter(endpoint=f"{jaeger.otlp_endpoint}/v1/traces")
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, provider.get_tracer(service)


async def test_one_events_trace_in_the_trace_view(
    kafka_bootstrap: str, mongodb_uri: str, jaeger: Jaeger, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", jaeger.otlp_endpoint)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "campaign-ledger")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
    agent_provider, agent = tracer(jaeger, "generation-agent")
    dashboard_provider, dashboard = tracer(jaeger, "campaign-dashboard")
    async with running_ledger(isolated_settings(kafka_bootstrap, mongodb_uri)) as ledger:
        campaign = f"c-{uuid.uuid4().hex[:8]}"
        event = cloud_event(
            "campaign.artifact.generated",
            {
                "campaign_id": campaign,
                "artifact_id": f"{campaign}.copy",
                "artifact_type": "copy",
                "version_id": f"{campaign}.copy.v1",
                "content": {"headline": "Spring is here"},
            },
        )
        with agent.start_as_current_span(
            "publish campaign.artifact.generated", kind=SpanKind.PRODUCER
        ) as sent:
            PROPAGATOR.inject(event)  # the CloudEvents Distributed Tracing attribute
            await ledger.send(event)
        trace_id = f"{sent.get_span_context().trace_id:032x}"
        await ledger.wait_revision(campaign, 1)
        [published] = [
            m for m in (await ledger.reader("snapshot")).messages if m["subject"] == campaign
        ]
        # The dashboard side continues the trace from what it received.
        context = PROPAGATOR.extract({"traceparent": published["traceparent"]})
        with dashboard.start_as_current_span("render snapshot", context=context):
            headers: dict[str, str] = {}
            PROPAGATOR.inject(headers)
            answer = await ledger.http.get(f"/campaigns/{campaign}/snapshot", headers=headers)
            assert answer.status_code == 200
        agent_provider.shutdown()
        dashboard_provider.shutdown()

        async def complete() -> bool:
            found = jaeger.trace(trace_id)
            names = {span["operationName"] for span in (found or {}).get("spans", [])}
            return {
                "ledger batch",
                "render snapshot",
                "GET /campaigns/{campaign_id}/snapshot",
            } <= names

        await eventually(complete, timeout=30, interval=0.2)

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"]
        )
        page = await browser.new_page(viewport={"width": 1400, "height": 700})
        await page.goto(f"{jaeger.query_url}/?trace={trace_id}")
        rows = page.locator(".row")
        for text in (
            "generation-agent: publish campaign.artifact.generated",
            "campaign-ledger: ledger event campaign.artifact.generated",
            "campaign-ledger: ledger batch",
            "campaign-ledger: write",
            "campaign-dashboard: render snapshot",
            "campaign-ledger: GET /campaigns/{campaign_id}/snapshot",
        ):
            await expect(rows.filter(has_text=text).first).to_be_visible()
        await expect(page.locator(".tags span.outcome").first).to_have_text(
            "ledger.outcome=applied"
        )
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(SCREENSHOT), full_page=True)
        await browser.close()
