"""JSON Schema of every event and the AsyncAPI document, generated from the pydantic models.

`campaign-ledger schemas` writes them to `schemas/`; a test regenerates them and fails on
any drift, so the files other teams read are always the code's own. The AsyncAPI document is
written here rather than by FastStream: FastStream would describe the handler's batch as the
payload and cannot say that one record holds one CloudEvent in either of two content modes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from service.domain.events import (
    DATA_MODELS,
    ID_PATTERN,
    EventRejectedEvent,
    EventType,
    SnapshotUpdatedEvent,
    inbound_event_schemas,
    inbound_model_name,
)
from service.settings import Settings

ASYNCAPI_VERSION = "3.0.0"
KAFKA_BINDING_VERSION = "0.5.0"
CLOUDEVENTS_JSON = "application/cloudevents+json"
SERVICE_VERSION = "0.1.0"

# Which inbound types each input topic is meant for (any known type is accepted on any).
INBOUND_CHANNELS: dict[str, tuple[str, tuple[EventType, ...]]] = {
    "artifactGenerated": ("topic_artifact_generated", (EventType.ARTIFACT_GENERATED,)),
    "auditCompleted": ("topic_audit_completed", (EventType.AUDIT_COMPLETED,)),
    "feedbackSubmitted": ("topic_feedback", (EventType.FEEDBACK_SUBMITTED,)),
    "lifecycle": (
        "topic_lifecycle",
        tuple(
            t
            for t in DATA_MODELS
            if t
            not in {
                EventType.ARTIFACT_GENERATED,
                EventType.AUDIT_COMPLETED,
                EventType.FEEDBACK_SUBMITTED,
            }
        ),
    ),
}


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


# ---- AsyncAPI --------------------------------------------------------------------------------

DESCRIPTION = f"""\
Events read and written by campaign-ledger: CloudEvents 1.0 over Kafka, one event per record,
keyed by campaign id.

Inbound records may use either content mode of the CloudEvents Kafka protocol binding, and the
same event (same `source` and `id`) sent once in each mode is one event:

* **structured mode**: the record's value is the whole event as JSON (`content-type:
  {CLOUDEVENTS_JSON}`, optional);
* **binary mode** (a `ce_specversion` header; the Java SDK's default): the attributes are
  headers `ce_<name>`, `content-type` is `datacontenttype` and must be a JSON media type, and
  the value is `data`.

`time` is optional in both modes: the record's timestamp stands in. Records that cannot be
applied go to the dead-letter channel with a reason. Published events are structured mode."""


def asyncapi_document(settings: Settings) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of the service as configured by `settings`."""
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    envelopes = inbound_event_schemas()
    for channel_id, (attribute, types) in INBOUND_CHANNELS.items():
        ids = []
        for event_type in types:
            name = inbound_model_name(event_type)
            data_model = DATA_MODELS[event_type]
            schemas[data_model.__name__] = inline_refs(data_model.model_json_schema())
            data_ref = {"$ref": f"#/components/schemas/{data_model.__name__}"}
            envelope = inline_refs(envelopes[event_type].model_json_schema())
            envelope["properties"]["data"] = data_ref
            schemas[f"{name}Event"] = envelope
            messages[f"{name}Structured"] = _structured_message(event_type, name)
            messages[f"{name}Binary"] = _binary_message(event_type, name, envelope, data_ref)
            ids += [f"{name}Structured", f"{name}Binary"]
        channels[channel_id] = _channel(
            getattr(settings, attribute),
            ids,
            f"Input: {', '.join(f'`{t.value}`' for t in types)} events, in either content "
            "mode (any known type is accepted on any input topic).",
        )
        operations[f"receive{channel_id[0].upper()}{channel_id[1:]}"] = _operation(
            "receive",
            channel_id,
            ids,
            "Each batch of records is stored in one MongoDB transaction before its offsets "
            "are committed; each event is applied once per (source, id).",
            {"groupId": {"type": "string", "enum": [settings.kafka_group_id]}},
        )
    for channel_id, attribute, model, key, description in (
        (
            "snapshotUpdated",
            "topic_snapshot_updated",
            SnapshotUpdatedEvent,
            "The campaign id.",
            "The whole campaign snapshot after each change; `data.revision` is 1, 2, 3 ... "
            "per campaign.",
        ),
        (
            "deadLetter",
            "topic_dead_letter",
            EventRejectedEvent,
            "The rejected record's key, when it had one that is UTF-8 text.",
            "Records that could not be applied, with the reason and the original key, "
            "value and headers.",
        ),
    ):
        message_id = model.__name__.removesuffix("Event")
        schemas[model.__name__] = inline_refs(model.model_json_schema())
        messages[message_id] = {
            "name": message_id,
            "title": model.__name__,
            "contentType": CLOUDEVENTS_JSON,
            "headers": {
                "type": "object",
                "required": ["content-type"],
                "properties": {"content-type": {"type": "string", "const": CLOUDEVENTS_JSON}},
            },
            "payload": {"$ref": f"#/components/schemas/{model.__name__}"},
            "bindings": _key_binding(key),
        }
        channels[channel_id] = _channel(getattr(settings, attribute), [message_id], description)
        operations[f"send{channel_id[0].upper()}{channel_id[1:]}"] = _operation(
            "send",
            channel_id,
            [message_id],
            "Published after the transaction commits (acks=all, idempotent producer), "
            "before the input offsets are committed; structured mode.",
            {"clientId": {"type": "string", "enum": ["campaign-ledger"]}},
        )
    servers, security_schemes = _servers(settings)
    components: dict[str, Any] = {"messages": messages, "schemas": schemas}
    if security_schemes:
        components["securitySchemes"] = security_schemes
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "campaign-ledger",
            "version": SERVICE_VERSION,
            "description": DESCRIPTION,
            "license": {
                "name": "Apache-2.0",
                "url": "https://www.apache.org/licenses/LICENSE-2.0",
            },
        },
        "defaultContentType": CLOUDEVENTS_JSON,
        "servers": servers,
        "channels": channels,
        "operations": operations,
        "components": components,
    }


def _structured_message(event_type: EventType, name: str) -> Any:
    return {
        "name": f"{name}Structured",
        "title": f"{event_type.value} (structured mode)",
        "summary": "The record's value is the whole CloudEvent as JSON.",
        "contentType": CLOUDEVENTS_JSON,
        "headers": {
            "type": "object",
            "description": "No `ce_specversion` header: that would make the record binary mode.",
            "not": {"required": ["ce_specversion"]},
            "properties": {
                "content-type": {
                    "type": "string",
                    "description": f"{CLOUDEVENTS_JSON}, as the binding says (not required).",
                }
            },
        },
        "payload": {"$ref": f"#/components/schemas/{name}Event"},
        "bindings": _key_binding("The campaign id (data.campaign_id); may be absent."),
    }


def _binary_message(
    event_type: EventType, name: str, envelope: dict[str, Any], data_ref: dict[str, Any]
) -> Any:
    """Binary mode: the envelope's attributes become `ce_*` headers, the value is `data`."""
    properties: dict[str, Any] = {}
    for attribute, schema in envelope["properties"].items():
        if attribute == "data":
            continue
        header = "content-type" if attribute == "datacontenttype" else f"ce_{attribute}"
        properties[header] = _header_schema(schema)
    required = [
        "content-type" if a == "datacontenttype" else f"ce_{a}"
        for a in envelope.get("required", [])
        if a != "data"
    ]
    return {
        "name": f"{name}Binary",
        "title": f"{event_type.value} (binary mode)",
        "summary": "The record's value is `data`; the attributes are `ce_*` headers "
        "(extension attributes as `ce_<name>`), `content-type` is datacontenttype.",
        "contentType": "application/json",
        "headers": {"type": "object", "required": required, "properties": properties},
        "payload": data_ref,
        "bindings": _key_binding("The campaign id (data.campaign_id); may be absent."),
    }


def _header_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """An attribute's schema as a header: always a string, never null."""
    header = {k: v for k, v in schema.items() if k not in {"anyOf", "default", "title"}}
    for option in schema.get("anyOf", []):
        if option.get("type") != "null":
            header.update(option)
    header["type"] = "string"
    return header


def _key_binding(description: str) -> dict[str, Any]:
    return {
        "kafka": {
            "key": {"type": "string", "pattern": ID_PATTERN, "description": description},
            "bindingVersion": KAFKA_BINDING_VERSION,
        }
    }


def _channel(address: str, message_ids: list[str], description: str) -> dict[str, Any]:
    return {
        "address": address,
        "description": description,
        "messages": {m: {"$ref": f"#/components/messages/{m}"} for m in message_ids},
    }


def _operation(
    action: str, channel_id: str, message_ids: list[str], description: str, binding: Any
) -> dict[str, Any]:
    return {
        "action": action,
        "channel": {"$ref": f"#/channels/{channel_id}"},
        "description": description,
        "messages": [{"$ref": f"#/channels/{channel_id}/messages/{m}"} for m in message_ids],
        "bindings": {"kafka": {**binding, "bindingVersion": KAFKA_BINDING_VERSION}},
    }


SASL_SCHEMES = {
    "PLAIN": ("saslPlain", "plain"),
    "SCRAM-SHA-256": ("saslScramSha256", "scramSha256"),
    "SCRAM-SHA-512": ("saslScramSha512", "scramSha512"),
}


def _servers(settings: Settings) -> tuple[dict[str, Any], dict[str, Any]]:
    """One server per bootstrap address, with the protocol and SASL mechanism configured."""
    protocol = settings.kafka_security_protocol
    server: dict[str, Any] = {
        "protocol": "kafka-secure" if protocol in {"SSL", "SASL_SSL"} else "kafka",
        "description": f"A Kafka bootstrap server (KAFKA_SECURITY_PROTOCOL={protocol}).",
    }
    schemes: dict[str, Any] = {}
    if protocol.startswith("SASL_"):
        scheme_id, scheme_type = SASL_SCHEMES[settings.kafka_sasl_mechanism or "PLAIN"]
        schemes[scheme_id] = {
            "type": scheme_type,
            "description": "KAFKA_SASL_USERNAME / KAFKA_SASL_PASSWORD",
        }
        server["security"] = [{"$ref": f"#/components/securitySchemes/{scheme_id}"}]
    servers = {
        f"kafka{index}": {"host": address, **server}
        for index, address in enumerate(settings.kafka_servers, 1)
    }
    return servers, schemes
