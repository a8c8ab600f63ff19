"""The management surface: /healthz, /readyz, /metrics, on their own port when configured.

With MANAGEMENT_PORT set (k8s/: 9090), `PortSplit` serves those three paths only on that
port and everything else only on HTTP_PORT, so the Service that exposes the API exposes no
probe or metric. The consumer role serves nothing but them (`management_app`).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.routes import health as health_routes
from service.app.health import Health

MANAGEMENT_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class PortSplit:
    """ASGI middleware: management paths on `management_port` only, the rest elsewhere only."""

    def __init__(self, app: ASGIApp, management_port: int) -> None:
        self.app = app
        self.management_port = management_port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            server = scope.get("server")
            on_management = server is not None and server[1] == self.management_port
            if on_management != (scope["path"] in MANAGEMENT_PATHS):
                await JSONResponse({"detail": "Not Found"}, 404)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def management_app(health: Health, *, lifespan: Any = None) -> FastAPI:
    """The consumer role's HTTP app: probes and metrics only."""
    app = FastAPI(
        title="campaign-ledger (consumer)",
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.include_router(health_routes.router(health))
    return app


def split_ports(app: FastAPI, http_port: int, management_port: int | None) -> None:
    """Serve the management paths apart from the API when a distinct port is configured."""
    if management_port is not None and management_port != http_port:
        app.add_middleware(PortSplit, management_port=management_port)
