"""The API's OpenAPI document: FastAPI's, plus the bearer security scheme and the 401 answer.

`campaign-ledger schemas` writes the committed copy (`make schemas`);
tests/unit/test_openapi.py fails when it drifts from the code, and `make lint` validates it
with openapi-spec-validator.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

SCHEME = "bearer"
UNAUTHORIZED = {
    "description": "`API_TOKENS` is set and no `Authorization: Bearer <token>` names one",
    "headers": {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "`Bearer`"}},
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
}


def secured(document: dict[str, Any]) -> dict[str, Any]:
    """Every documented route takes the bearer token (needed when API_TOKENS is set)."""
    components = document.setdefault("components", {})
    components.setdefault("securitySchemes", {})[SCHEME] = {
        "type": "http",
        "scheme": "bearer",
        "description": "One of the comma-separated `API_TOKENS`; without that setting the "
        "API is open. /healthz, /readyz and /metrics never need it.",
    }
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            operation["security"] = [{SCHEME: []}]
            operation.setdefault("responses", {}).setdefault("401", UNAUTHORIZED)
    return document


def install(app: FastAPI) -> None:
    """Make `app.openapi()` answer the secured document (computed once)."""
    plain = app.openapi

    def openapi() -> dict[str, Any]:
        if getattr(app, "_secured_openapi", None) is None:
            app._secured_openapi = secured(plain())  # type: ignore[attr-defined]
        document: dict[str, Any] = app._secured_openapi  # type: ignore[attr-defined]
        return document

    app.openapi = openapi  # type: ignore[method-assign]
