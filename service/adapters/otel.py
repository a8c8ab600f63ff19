"""The OpenTelemetry SDK: set up from the standard `OTEL_*` variables, or not at all.

Tracing is on only when an OTLP endpoint is set (`OTEL_EXPORTER_OTLP_ENDPOINT` or
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) and neither `OTEL_SDK_DISABLED=true` nor
`OTEL_TRACES_EXPORTER=none` says otherwise. Everything else is the SDK's own reading of its
variables: the sampler (`OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`; default
parent-based always-on), the exporter's endpoint, headers, timeout and compression, the batch
processor's delays and sizes (`OTEL_BSP_*`), resource attributes (`OTEL_RESOURCE_ATTRIBUTES`).
`OTEL_EXPORTER_OTLP_PROTOCOL` (or its `_TRACES_` form) picks `http/protobuf`, the default
the specification gives, or `grpc`. `OTEL_SERVICE_NAME` defaults to `campaign-ledger`.

The provider is this service's own (not the process-wide global one), so a second service
built in the same process, as the tests do, starts from its own environment.
"""

from __future__ import annotations

import asyncio
from typing import Literal

import structlog
from fastapi import FastAPI
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.app import tracing

log = structlog.get_logger(__name__)

DEFAULT_SERVICE_NAME = "campaign-ledger"
# Probes and scrapes come every few seconds and say nothing about a request's path.
EXCLUDED_URLS = "/healthz,/readyz,/metrics"


class OtelSettings(BaseSettings):
    """The standard variables this module decides on; the SDK reads the rest itself."""

    model_config = SettingsConfigDict(env_prefix="otel_", case_sensitive=False, extra="ignore")

    sdk_disabled: bool = False
    traces_exporter: str = "otlp"
    exporter_otlp_endpoint: str | None = None
    exporter_otlp_traces_endpoint: str | None = None
    exporter_otlp_protocol: Literal["grpc", "http/protobuf"] = "http/protobuf"
    exporter_otlp_traces_protocol: Literal["grpc", "http/protobuf"] | None = None
    service_name: str | None = None
    resource_attributes: str = ""

    @property
    def tracing(self) -> bool:
        exporters = {name.strip() for name in self.traces_exporter.split(",")}
        endpoint = self.exporter_otlp_traces_endpoint or self.exporter_otlp_endpoint
        return not self.sdk_disabled and "none" not in exporters and bool(endpoint)


def configure(app: FastAPI, settings: OtelSettings | None = None) -> TracerProvider | None:
    """Turn tracing on (a provider exporting over OTLP, `app` instrumented) or off (None)."""
    settings = settings or OtelSettings()
    if not settings.tracing:
        tracing.disable()
        return None
    attributes = {}
    if settings.service_name is None and "service.name=" not in settings.resource_attributes:
        attributes[SERVICE_NAME] = DEFAULT_SERVICE_NAME
    # Resource.create adds OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES; the sampler comes
    # from OTEL_TRACES_SAMPLER when none is given.
    provider = TracerProvider(resource=Resource.create(attributes), shutdown_on_exit=False)
    provider.add_span_processor(BatchSpanProcessor(_exporter(settings)))
    tracing.enable(provider.get_tracer("campaign-ledger"))
    _instrument(app, provider)
    log.info(
        "tracing_on",
        endpoint=settings.exporter_otlp_traces_endpoint or settings.exporter_otlp_endpoint,
        protocol=settings.exporter_otlp_traces_protocol or settings.exporter_otlp_protocol,
    )
    return provider


def _exporter(settings: OtelSettings) -> SpanExporter:
    protocol = settings.exporter_otlp_traces_protocol or settings.exporter_otlp_protocol
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # noqa: PLC0415
            OTLPSpanExporter as GrpcExporter,
        )

        return GrpcExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
        OTLPSpanExporter as HttpExporter,
    )

    return HttpExporter()


def _instrument(app: FastAPI, provider: TracerProvider) -> None:
    """Spans for HTTP reads and streams (one per request: a stream's messages are not
    spans of their own, or an open stream would make one per snapshot)."""
    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=provider,
        excluded_urls=EXCLUDED_URLS,
        exclude_spans=["receive", "send"],
    )


async def shutdown(provider: TracerProvider | None) -> None:
    """Export what is still buffered, then stop (on the service's stop). In a thread: the
    export is a blocking call, which may wait for an unreachable collector's timeout."""
    if provider is not None:
        await asyncio.to_thread(provider.shutdown)
