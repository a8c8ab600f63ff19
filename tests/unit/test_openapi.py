"""Schemas/openapi.json is the API's OpenAPI document as the code makes it; no drift."""

from __future__ import annotations

import json
from pathlib import Path

from service.commands.schemas import openapi_document as document

COMMITTED = Path(__file__).resolve().parents[2] / "schemas" / "openapi.json"


def test_committed_openapi_matches_the_code() -> None:
    assert COMMITTED.exists(), f"{COMMITTED} is missing: run `make schemas`"
    assert json.loads(COMMITTED.read_text()) == document(), (
        "schemas/openapi.json drifted from the code: run `make schemas` and commit"
    )


def test_every_documented_route_takes_the_bearer_token_and_says_401() -> None:
    spec = document()
    assert spec["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": spec["components"]["securitySchemes"]["bearer"]["description"],
    }
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            assert operation["security"] == [{"bearer": []}], (method, path)
            assert "401" in operation["responses"], (method, path)
    responses = spec["paths"]["/campaigns/{campaign_id}/snapshot"]["get"]["responses"]
    assert {"200", "304", "401", "404", "410"} <= set(responses)
    versions = spec["paths"]["/campaigns/{campaign_id}/artifacts/{artifact_id}/versions"]
    assert {"400", "401", "404"} <= set(versions["get"]["responses"])
    assert "/campaigns/{campaign_id}/versions/{version_id}/audits" in spec["paths"]
    stream = spec["paths"]["/campaigns/{campaign_id}/stream"]["get"]["responses"]
    assert "text/event-stream" in stream["200"]["content"] and "503" in stream
