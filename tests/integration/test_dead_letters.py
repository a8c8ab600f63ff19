"""Bad input goes to the dead letter topic with its reason; nothing else stops."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import orjson

from tests.events import cloud_event, generated
from tests.integration.harness import eventually, isolated_settings, running_ledger


async def test_bad_records_are_dead_lettered_and_good_ones_around_them_applied(
    kafka_bootstrap: str, mongodb_uri: str
) -> None:
    settings = isolated_settings(kafka_bootstrap, mongodb_uri, max_event_bytes=4096)
    async with running_ledger(settings) as ledger:
        c = f"c-{uuid.uuid4().hex[:8]}"
        key = c.encode()
        tricky = {"$where": "sleep(1000)", "a.b": {"$gt": 1}, "nested": {"$set": {"x": 1}}}
        bad: list[tuple[str, bytes | None]] = [
            ("not_json", b"{not json"),
            ("not_utf8", b"\xff\xfe\x00bad"),
            ("not_cloudevent", orjson.dumps({"hello": "world"})),
            ("unknown_type", orjson.dumps(cloud_event("campaign.exploded", {"campaign_id": c}))),
            (
                "invalid_data",
                orjson.dumps(
                    cloud_event("campaign.audit.completed", {"campaign_id": c, "version_id": "v"})
                ),
            ),
            ("too_large", orjson.dumps(generated(c, "a-big", "v-big", content={"t": "x" * 5000}))),
            ("empty_value", None),
        ]
        original = {"text": "the first take"}
        sends: list[Any] = [generated(c, f"{c}.a", f"{c}.v1", content=original)]
        for _, value in bad:
            sends.append(value)
        sends.append(generated(c, f"{c}.a", f"{c}.v2", content=tricky))
        # the same version id again with other content: refused by the rules, not stored
        sends.append(generated(c, f"{c}.a", f"{c}.v1", content={"text": "rewritten"}))
        # a keyed record whose key is another campaign
        mismatched = orjson.dumps(generated(c, f"{c}.b", f"{c}.b1"))
        topic = ledger.topic("artifact")
        pending = []
        for item in sends:
            value = orjson.dumps(item) if isinstance(item, dict) else item
            pending.append(await ledger.producer.send(topic, value, key=key))
        pending.append(await ledger.producer.send(topic, mismatched, key=b"someone-else"))
        pending.append(
            await ledger.producer.send(
                topic, orjson.dumps(generated(c, f"{c}.a", f"{c}.v3")), key=None
            )
        )
        for future in pending:
            await future

        async def all_letters() -> list[dict[str, Any]] | None:
            letters = await ledger.dead_letters()
            return letters if len(letters) >= len(bad) + 2 else None

        letters = await eventually(all_letters, timeout=60)
        by_reason = {letter["reason"]: letter for letter in letters}
        expected = {reason for reason, _ in bad} | {"version_conflict", "campaign_mismatch"}
        assert set(by_reason) == expected
        for letter in letters:
            assert letter["topic"] == topic
            assert isinstance(letter["partition"], int) and isinstance(letter["offset"], int)
            assert letter["detail"]
        assert by_reason["not_utf8"]["value"] is None
        assert base64.b64decode(by_reason["not_utf8"]["value_base64"]) == b"\xff\xfe\x00bad"
        assert by_reason["not_json"]["value"] == "{not json"
        assert by_reason["not_json"]["key"] == c
        assert by_reason["campaign_mismatch"]["key"] == "someone-else"
        assert "MAX_EVENT_BYTES" in by_reason["too_large"]["detail"]
        assert "data.outcome" in by_reason["invalid_data"]["detail"]

        # the valid events around them were applied, in order
        snap = await ledger.wait_revision(c, 3)
        assert snap["artifacts"][0]["version_count"] == 3
        stored = await ledger.db.versions.find_one({"_id": f"{c}.v2"})
        assert stored is not None and stored["content"] == tricky  # stored as data, intact
        first = await ledger.db.versions.find_one({"_id": f"{c}.v1"})
        assert first is not None and first["content"] == original  # not rewritten
        export = (await ledger.http.get(f"/campaigns/{c}/export")).json()
        assert [v["content"] for v in export["versions"] if v["_id"] == f"{c}.v2"] == [tricky]
        # the headers say what the letters are
        reader = await ledger.reader("dead_letter")
        assert all(h["content-type"] == b"application/cloudevents+json" for h in reader.headers)
        raw = reader.messages[0]
        assert raw["type"] == "campaign.event.rejected" and raw["specversion"] == "1.0"
