"""GET /healthz, /readyz, /metrics: open to probes and scrapers (no token)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.api.common import json_response
from service.app.health import Health


def router(health: Health) -> APIRouter:
    api = APIRouter(include_in_schema=False)

    @api.get("/healthz")
    async def healthz() -> Response:
        # Liveness: fails while the progress watchdog sees a stalled consumer.
        alive, watchdog = health.live()
        if alive:
            return json_response({"status": "ok"})
        return json_response({"status": "stalled", "watchdog": watchdog}, 503)

    @api.get("/readyz")
    async def readyz() -> Response:
        ready, checks = await health.ready()
        return json_response({"ready": ready, "checks": checks}, 200 if ready else 503)

    @api.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return api
