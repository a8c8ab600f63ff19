"""GET /openapi.json and /asyncapi.json: the API's and the events' specifications."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Response

from service.api.common import json_response


def router(
    openapi: Callable[[], dict[str, Any]], asyncapi: Callable[[], dict[str, Any]]
) -> APIRouter:
    api = APIRouter(include_in_schema=False)

    @api.get("/openapi.json")
    async def get_openapi() -> Response:
        return json_response(openapi())

    @api.get("/asyncapi.json")
    async def get_asyncapi() -> Response:
        return json_response(asyncapi())

    return api
