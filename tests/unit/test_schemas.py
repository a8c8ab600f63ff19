"""Schemas/ is generated from the code; this fails on any drift between the two."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from service.domain.events import DATA_MODELS
from service.schemas import asyncapi_document, event_models, write_schemas
from service.settings import Settings

COMMITTED = Path(__file__).resolve().parents[2] / "schemas"


def test_committed_schemas_match_the_code(tmp_path: Path) -> None:
    # What `make schemas` writes: the service's document with the default settings.
    generated = write_schemas(tmp_path, asyncapi_document(Settings.defaults()))
    for path in generated:
        committed = COMMITTED / path.name
        assert committed.exists(), f"{committed} is missing: run `make schemas`"
        assert json.loads(committed.read_text()) == json.loads(path.read_text()), (
            f"{committed.name} drifted from the code: run `make schemas` and commit"
        )
    extra = {p.name for p in COMMITTED.glob("*.json")} - {p.name for p in generated}
    extra -= {"openapi.json"}  # the HTTP API's document: checked by tests/unit/test_openapi.py
    assert not extra, f"schemas/ holds files the code no longer makes: {extra}"


def test_every_event_type_has_a_schema() -> None:
    types = set(event_models())
    assert "campaign.snapshot.updated" in types
    assert "campaign.event.rejected" in types
    assert len(types) == 13


# ---- the AsyncAPI document (what a platform engineer's validators check) -----------

COMPONENT_KEY = re.compile(r"^[a-zA-Z0-9.\-_]+$")  # the AsyncAPI 3 specification's pattern


@pytest.fixture
def asyncapi() -> dict[str, Any]:
    return asyncapi_document(Settings.defaults())


def resolve(document: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = document
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def test_component_keys_match_the_specification(asyncapi: dict[str, Any]) -> None:
    for kind, items in asyncapi["components"].items():
        for key in items:
            assert COMPONENT_KEY.match(key), f"components.{kind}.{key}"


def test_each_inbound_type_has_both_content_modes_one_event_per_record(
    asyncapi: dict[str, Any],
) -> None:
    settings = Settings.defaults()
    inbound = [c for c in asyncapi["channels"].values() if c["address"] in settings.input_topics]
    assert len(inbound) == 4
    types = set()
    for channel in inbound:
        for reference in channel["messages"].values():
            message = resolve(asyncapi, reference)
            payload = resolve(asyncapi, message["payload"])
            assert payload["type"] == "object"  # one event (or its data) per record, no array
            if message["name"].endswith("Structured"):
                assert message["contentType"] == "application/cloudevents+json"
                assert set(payload["required"]) >= {"specversion", "id", "source", "type"}
                assert "time" not in payload["required"]  # optional: the record time stands in
                types.add(payload["properties"]["type"]["const"])
            else:
                headers = message["headers"]
                assert set(headers["required"]) == {
                    "ce_specversion",
                    "ce_id",
                    "ce_source",
                    "ce_type",
                }
                assert {"ce_time", "ce_subject", "content-type"} <= set(headers["properties"])
                assert "campaign_id" in payload["required"]  # the value is data itself
                types.add(headers["properties"]["ce_type"]["const"])
    assert types == {t.value for t in DATA_MODELS}


def test_every_message_has_the_kafka_key_and_no_correlation_id(asyncapi: dict[str, Any]) -> None:
    messages = asyncapi["components"]["messages"]
    assert len(messages) == 2 * len(DATA_MODELS) + 2
    for name, message in messages.items():
        assert "correlationId" not in message, name  # the service sets no such header
        assert message["bindings"]["kafka"]["key"]["type"] == "string", name


def test_published_events_are_structured_cloudevents(asyncapi: dict[str, Any]) -> None:
    for name in ("SnapshotUpdated", "EventRejected"):
        message = asyncapi["components"]["messages"][name]
        assert message["contentType"] == "application/cloudevents+json"
        header = message["headers"]["properties"]["content-type"]
        assert header["const"] == "application/cloudevents+json"
    rejected = asyncapi["components"]["schemas"]["EventRejectedEvent"]
    assert "headers" in rejected["properties"]["data"]["properties"]


def test_servers_and_names_come_from_the_settings() -> None:
    settings = Settings.defaults().model_copy(
        update={
            "kafka_bootstrap_servers": "k1.example:9094,k2.example:9094",
            "kafka_security_protocol": "SASL_SSL",
            "kafka_sasl_mechanism": "SCRAM-SHA-512",
            "kafka_group_id": "ledger-prod",
            "topic_feedback": "team.feedback",
        }
    )
    document = asyncapi_document(settings)
    assert [s["host"] for s in document["servers"].values()] == [
        "k1.example:9094",
        "k2.example:9094",
    ]
    for server in document["servers"].values():
        assert server["protocol"] == "kafka-secure"
        assert resolve(document, server["security"][0])["type"] == "scramSha512"
    assert "team.feedback" in {c["address"] for c in document["channels"].values()}
    receive = [o for o in document["operations"].values() if o["action"] == "receive"]
    assert {o["bindings"]["kafka"]["groupId"]["enum"][0] for o in receive} == {"ledger-prod"}
