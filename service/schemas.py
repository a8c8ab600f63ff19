"""JSON Schema of every event and the AsyncAPI document, generated from the pydantic models.

`campaign-ledger schemas` writes them to `schemas/`; a test regenerates them and fails on
any drift, so the files other teams read are always the code's own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from service.domain.events import (
    EventRejectedEvent,
    SnapshotUpdatedEvent,
    inbound_event_schemas,
)


def inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with every local `$ref` replaced by its definition (ours are acyclic)."""
    definitions = schema.get("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                resolved = walk(definitions[ref.removeprefix("#/$defs/")])
                return {**resolved, **{k: walk(v) for k, v in node.items() if k != "$ref"}}
            return {k: walk(v) for k, v in node.items() if k != "$defs"}
        if isinstance(node, list):
            return [walk(item) for item in node]
        return node

    result: dict[str, Any] = walk(schema)
    return result


def event_models() -> dict[str, type[BaseModel]]:
    """Every event the service reads or writes, by CloudEvents type."""
    models: dict[str, type[BaseModel]] = {
        event_type.value: model for event_type, model in inbound_event_schemas().items()
    }
    models["campaign.snapshot.updated"] = SnapshotUpdatedEvent
    models["campaign.event.rejected"] = EventRejectedEvent
    return models


def event_schema(model: type[BaseModel]) -> dict[str, Any]:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **inline_refs(model.model_json_schema()),
    }


def inbound_batch_schema() -> dict[str, Any]:
    inbound = inbound_event_schemas()
    return {
        "type": "array",
        "title": "InboundEvents",
        "description": "One batch of CloudEvents; each record's value is one of these.",
        "items": {"oneOf": [inline_refs(m.model_json_schema()) for m in inbound.values()]},
    }


def write_schemas(directory: Path, asyncapi: dict[str, Any]) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for event_type, model in sorted(event_models().items()):
        path = directory / f"{event_type}.schema.json"
        path.write_text(json.dumps(event_schema(model), indent=2, sort_keys=True) + "\n")
        written.append(path)
    path = directory / "asyncapi.json"
    path.write_text(json.dumps(asyncapi, indent=2, sort_keys=True) + "\n")
    written.append(path)
    return written
