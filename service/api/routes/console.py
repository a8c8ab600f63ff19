"""GET /: the console, static files from service/api/console (no build step)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

CONSOLE = Path(__file__).resolve().parents[1] / "console"
_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}
# The page loads nothing from elsewhere, and nothing may load it into a frame.
_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def router() -> APIRouter:
    api = APIRouter(include_in_schema=False)

    def file(name: str) -> FileResponse:
        path = CONSOLE / name
        return FileResponse(path, media_type=_TYPES[path.suffix], headers=_HEADERS)

    @api.get("/")
    async def index() -> FileResponse:
        return file("index.html")

    @api.get("/console/app.js")
    async def script() -> FileResponse:
        return file("app.js")

    @api.get("/console/review.js")
    async def review_script() -> FileResponse:
        return file("review.js")

    @api.get("/console/app.css")
    async def style() -> FileResponse:
        return file("app.css")

    return api
