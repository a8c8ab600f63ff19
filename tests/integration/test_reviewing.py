"""Reviewers' reads through real Kafka and MongoDB: a version's content as sent, the diff
between versions with the feedback between them, and iteration analytics across campaigns,
checked against figures worked out by hand."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from tests.events import cloud_event
from tests.integration.harness import Ledger, eventually, isolated_settings, new_id, running_ledger

TOKEN = "reviewing-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def ledger(kafka_bootstrap: str, mongodb_uri: str) -> AsyncIterator[Ledger]:
    settings = isolated_settings(kafka_bootstrap, mongodb_uri, api_tokens=TOKEN)
    async with running_ledger(settings) as running:
        running.http.headers.update(AUTH)
        yield running


def generated(
    campaign: str,
    artifact: str,
    n: int,
    content: dict[str, Any],
    *,
    kind: str = "copy",
    at: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    data = {
        "campaign_id": campaign,
        "artifact_id": artifact,
        "artifact_type": kind,
        "version_id": f"{artifact}.v{n}",
        "content": content,
        **extra,
    }
    if at is not None:
        data["generated_at"] = at
    return cloud_event("campaign.artifact.generated", data)


def audit(
    campaign: str, version: str, outcome: str, scores: dict[str, int] | None = None
) -> dict[str, Any]:
    data: dict[str, Any] = {"campaign_id": campaign, "version_id": version, "outcome": outcome}
    if scores is not None:
        data["category_scores"] = {k: {"score": v} for k, v in scores.items()}
    if outcome == "error":
        data["error"] = "the auditor timed out"
    return cloud_event("campaign.audit.completed", data)


def feedback(
    campaign: str, artifact: str, version: str, text: str, event_id: str
) -> dict[str, Any]:
    return cloud_event(
        "campaign.feedback.submitted",
        {
            "campaign_id": campaign,
            "artifact_id": artifact,
            "version_id": version,
            "feedback_text": text,
        },
        id=event_id,
    )


def approved(campaign: str, version: str, at: str) -> dict[str, Any]:
    return cloud_event(
        "campaign.version.approved",
        {"campaign_id": campaign, "version_id": version, "approved_by": "reviewer"},
        time=at,
    )


async def answer(ledger: Ledger, path: str, status: int = 200, **kwargs: Any) -> httpx.Response:
    async def got() -> httpx.Response | None:
        response = await ledger.http.get(path, **kwargs)
        return response if response.status_code == status else None

    result: httpx.Response = await eventually(got, timeout=30)
    return result


UNICODE_CONTENT: dict[str, Any] = {
    "headline": 'Ünïcødé spring — 春の新作 🌸 \u200b zero-width, "quotes", \\ and \t tab',
    "body": "Line one\nLine two\r\nLine three",
    "nested": {"a": {"b": {"c": [1, 2.5, True, None, "x", {"d": []}]}}, "empty": {}},
    "big": list(range(5000)),
    "floats": [1.0, 0.1, 1e300, -2.5e-8],
    "ints": [0, -1, 2**53 + 1, 2**63 - 1],
    "$dollar.key": {"a.b": {"$c": 1}},
    "z": "last key, so key order is checked",
    "a": "after z",
}


async def test_version_content_is_returned_exactly_as_sent(ledger: Ledger) -> None:
    campaign, artifact = new_id("c"), new_id("a")
    await ledger.send(generated(campaign, artifact, 1, UNICODE_CONTENT, run_id="run-1"))
    path = f"/campaigns/{campaign}/versions/{artifact}.v1"
    response = await answer(ledger, path)
    # Byte for byte: the event was written with orjson, the answer too, so the content's
    # bytes must appear unchanged (key order, number forms, escapes, non-ASCII).
    assert orjson.dumps(UNICODE_CONTENT) in response.content
    body = response.json()
    assert body["content"] == UNICODE_CONTENT
    assert json.dumps(body["content"]) == json.dumps(UNICODE_CONTENT)
    assert isinstance(body["content"]["floats"][0], float)
    assert body["version_number"] == 1
    assert body["artifact_id"] == artifact
    assert body["artifact_type"] == "copy"
    assert body["campaign_id"] == campaign
    assert body["run_id"] == "run-1"
    assert body["audit_state"] == "pending"
    assert body["approved"] is False and body["archived"] is False
    assert body["parent_version_id"] is None and body["feedback_id"] is None
    assert body["latest_audit"] is None
    assert response.headers["cache-control"] == "no-cache"

    # ETag: the same marks give 304; a new audit, an approval and an archive each change it
    first = response.headers["etag"]
    assert (await ledger.http.get(path, headers={"If-None-Match": first})).status_code == 304
    await ledger.send(audit(campaign, f"{artifact}.v1", "error"))
    await ledger.send(audit(campaign, f"{artifact}.v1", "conditional", {"brand": 71}))

    async def both_audits() -> httpx.Response | None:
        response = await ledger.http.get(path, headers={"If-None-Match": first})
        done = response.status_code == 200 and response.json()["audit_attempts"] == 2
        return response if done else None

    audited: httpx.Response = await eventually(both_audits, timeout=30)
    assert audited.headers["etag"] != first
    latest = audited.json()["latest_audit"]
    assert audited.json()["audit_state"] == "conditional"
    assert audited.json()["audit_attempts"] == 2
    assert latest["attempt"] == 2 and latest["outcome"] == "conditional"
    assert latest["category_scores"] == {"brand": {"score": 71}}
    assert orjson.dumps(UNICODE_CONTENT) in audited.content
    await ledger.send(approved(campaign, f"{artifact}.v1", "2026-11-20T10:00:00Z"))
    second = audited.headers["etag"]
    approval = await answer(ledger, path, headers={"If-None-Match": second})
    assert approval.json()["approved"] is True
    assert approval.json()["approved_by"] == "reviewer"
    assert approval.json()["approved_at"] == "2026-11-20T10:00:00.000Z"
    assert approval.headers["etag"] not in {first, second}


async def test_unknown_foreign_and_unauthorised_reads(ledger: Ledger) -> None:
    campaign, other, artifact = new_id("c"), new_id("c"), new_id("a")
    await ledger.send(generated(campaign, artifact, 1, {"t": "one"}))
    await ledger.send(generated(other, f"{other}.a", 1, {"t": "other"}))
    await answer(ledger, f"/campaigns/{campaign}/versions/{artifact}.v1")
    await answer(ledger, f"/campaigns/{other}/versions/{other}.a.v1")
    not_found = [
        f"/campaigns/{campaign}/versions/{other}.a.v1",  # another campaign's version
        f"/campaigns/{other}/versions/{artifact}.v1",
        f"/campaigns/{campaign}/versions/no-such-version",
        f"/campaigns/no-such-campaign/versions/{artifact}.v1",
        f"/campaigns/{campaign}/versions/{other}.a.v1/diff",
        f"/campaigns/{campaign}/versions/{artifact}.v1/diff?against={other}.a.v1",
        f"/campaigns/{campaign}/versions/{artifact}.v1/diff?against=nothing-here",
        f"/campaigns/{campaign}/versions/{artifact}.v1/diff",  # a first version: none before
    ]
    for path in not_found:
        response = await ledger.http.get(path)
        assert response.status_code == 404, (path, response.status_code, response.text)
        assert response.json()["detail"]
    guarded = [
        f"/campaigns/{campaign}/versions/{artifact}.v1",
        f"/campaigns/{campaign}/versions/{artifact}.v1/diff?against={artifact}.v1",
        "/analytics/iterations",
    ]
    for path in guarded:
        for header in ({"Authorization": ""}, {"Authorization": "Bearer wrong"}):
            refused = await ledger.http.get(path, headers=header)
            assert refused.status_code == 401, (path, header)
            assert refused.headers["www-authenticate"] == "Bearer"
        assert (await ledger.http.get(path)).status_code == 200, path


async def test_diff_between_versions_with_the_feedback_between_them(ledger: Ledger) -> None:
    campaign, artifact, other = new_id("c"), new_id("a"), new_id("a")
    v1 = {
        "headline": "Spring is here",
        "body": "Fresh colours.\nNew shapes.\nBuy now.",
        "cta": "Shop",
        "tags": ["spring", "sale"],
        "style": {"tone": "calm", "length": 120},
    }
    v2 = {
        "headline": "Spring is finally here",
        "body": "Fresh colours.\nBolder shapes.\nBuy now.",
        "tags": ["new", "spring", "sale"],
        "style": {"tone": "warm", "length": 120},
        "subline": "Ünïcødé 🌸",
    }
    fid = new_id("fb")
    await ledger.send(generated(campaign, artifact, 1, v1))
    await ledger.send(generated(campaign, other, 1, {"x": 1}))
    await ledger.send(feedback(campaign, artifact, f"{artifact}.v1", "Warmer tone, please", fid))
    await ledger.send(
        generated(campaign, artifact, 2, v2, parent_version_id=f"{artifact}.v1", feedback_id=fid)
    )
    # v3 names no parent: the previous version is the default
    await ledger.send(generated(campaign, artifact, 3, {**v2, "headline": "Spring is here!"}))
    base = f"/campaigns/{campaign}/versions"
    await answer(ledger, f"{base}/{artifact}.v3")
    response = await answer(ledger, f"{base}/{artifact}.v2/diff")
    body = response.json()
    assert body["against_chosen"] == "parent"
    assert body["against"]["version_id"] == f"{artifact}.v1"
    assert body["version"]["version_number"] == 2
    assert body["artifact_id"] == artifact and body["artifact_type"] == "copy"
    changes = {c["path"]: c for c in body["changes"]}
    assert set(changes) == {"/headline", "/body", "/tags/0", "/style/tone", "/subline", "/cta"}
    assert body["counts"] == {"added": 2, "removed": 1, "changed": 3}
    assert changes["/cta"] == {
        "path": "/cta",
        "segments": ["cta"],
        "kind": "removed",
        "old": "Shop",
    }
    assert changes["/tags/0"]["kind"] == "added" and changes["/tags/0"]["new"] == "new"
    assert changes["/subline"] == {
        "path": "/subline",
        "segments": ["subline"],
        "kind": "added",
        "new": "Ünïcødé 🌸",
    }
    tone = changes["/style/tone"]
    assert (tone["kind"], tone["old"], tone["new"]) == ("changed", "calm", "warm")
    headline = changes["/headline"]["text_diff"]
    assert headline["granularity"] == "word"
    assert [op for op in headline["ops"] if op["op"] != "equal"] == [
        {"op": "insert", "text": "finally "}
    ]
    lines = changes["/body"]["text_diff"]
    assert lines["granularity"] == "line"
    assert {"op": "delete", "text": "New shapes.\n"} in lines["ops"]
    assert {"op": "insert", "text": "Bolder shapes.\n"} in lines["ops"]
    assert [f["feedback_text"] for f in body["feedback"]] == ["Warmer tone, please"]
    assert body["feedback"][0]["feedback_id"] == fid

    previous = (await ledger.http.get(f"{base}/{artifact}.v3/diff")).json()
    assert previous["against_chosen"] == "previous"
    assert previous["against"]["version_id"] == f"{artifact}.v2"
    assert [c["path"] for c in previous["changes"]] == ["/headline"]
    assert previous["feedback"] == []

    # any two versions of the artifact, either way round
    backwards = (await ledger.http.get(f"{base}/{artifact}.v1/diff?against={artifact}.v2")).json()
    assert backwards["against_chosen"] == "requested"
    assert {c["path"]: c["kind"] for c in backwards["changes"]}["/cta"] == "added"
    assert [f["feedback_text"] for f in backwards["feedback"]] == ["Warmer tone, please"]
    same = (await ledger.http.get(f"{base}/{artifact}.v2/diff?against={artifact}.v2")).json()
    assert same["changes"] == [] and same["counts"] == {"added": 0, "removed": 0, "changed": 0}

    refused = await ledger.http.get(f"{base}/{artifact}.v2/diff?against={other}.v1")
    assert refused.status_code == 400
    assert "artifact" in refused.json()["detail"]


async def test_diff_of_large_arrays_names_only_what_changed(ledger: Ledger) -> None:
    campaign, artifact = new_id("c"), new_id("a")
    items = [{"id": i, "label": f"item {i}"} for i in range(3000)]
    changed = [dict(item) for item in items]
    changed[1500]["label"] = "item fifteen hundred"
    del changed[10]
    changed.append({"id": 3000, "label": "new"})
    await ledger.send(generated(campaign, artifact, 1, {"items": items}))
    await ledger.send(generated(campaign, artifact, 2, {"items": changed}))
    response = await answer(ledger, f"/campaigns/{campaign}/versions/{artifact}.v2/diff")
    changes = response.json()["changes"]
    assert [(c["kind"], c["path"]) for c in changes] == [
        ("removed", "/items/10"),
        ("changed", "/items/1499/label"),
        ("added", "/items/2999"),
    ]
    assert changes[1]["old"] == "item 1500" and changes[1]["new"] == "item fifteen hundred"


# ---- analytics, against figures worked out by hand ---------------------------------------
#
# copy A (campaign X): v1 Mon 2 Nov 09:00 failed (brand 50, clarity 60); feedback; v2 (parent
#   v1) passed (brand 70, clarity 65); v2 approved at 11:00.  -> passes at 2; approval 7200 s;
#   round 1: brand +20, clarity +5
# copy B (X): v1 Tue 3 Nov passed (brand 90).  -> passes at 1
# copy C (X): v1 Tue 10 Nov 09:00 failed (brand 40); v2 (no parent) audit error, then
#   conditional (brand 45, clarity 50); v3 (parent v2) passed (brand 60), approved 15:00.
#   -> passes at 3; approval 21600 s; round 1: brand +5 (clarity not scored before);
#   round 2: brand +15
# copy E (campaign Y): v1 Thu 5 Nov failed (brand 30); v2 (parent v1) failed (brand 20).
#   -> never passes; round 1: brand -10
# visual_concept D (X): v1 Wed 4 Nov, never audited.
#
# copy: 4 artifacts, 8 versions, 3 passed, mean (2+1+3)/3 = 2, p90 = 3 (nearest rank of 3),
#   first pass 1 of 4 judged = 0.25, approvals 2, mean (7200+21600)/2 = 14400 s;
#   brand per round (20+5+15-10)/4 = 7.5, clarity 5/1; by round: r1 brand (20+5-10)/3 = 5,
#   r1 clarity 5, r2 brand 15; weeks: 2026-11-02 (A, B, E), 2026-11-09 (C).


async def send_analytics_set(ledger: Ledger) -> tuple[str, str]:
    x, y = new_id("cx"), new_id("cy")
    a, b, c, d, e = (f"{x}.A", f"{x}.B", f"{x}.C", f"{x}.D", f"{y}.E")
    fid = new_id("fb")
    events = [
        generated(x, a, 1, {"h": "a1"}, at="2026-11-02T09:00:00Z"),
        audit(x, f"{a}.v1", "fail", {"brand": 50, "clarity": 60}),
        feedback(x, a, f"{a}.v1", "More energy", fid),
        generated(
            x,
            a,
            2,
            {"h": "a2"},
            at="2026-11-02T10:00:00Z",
            parent_version_id=f"{a}.v1",
            feedback_id=fid,
        ),
        audit(x, f"{a}.v2", "pass", {"brand": 70, "clarity": 65}),
        approved(x, f"{a}.v2", "2026-11-02T11:00:00Z"),
        generated(x, b, 1, {"h": "b1"}, at="2026-11-03T09:00:00Z"),
        audit(x, f"{b}.v1", "pass", {"brand": 90}),
        generated(x, c, 1, {"h": "c1"}, at="2026-11-10T09:00:00Z"),
        audit(x, f"{c}.v1", "fail", {"brand": 40}),
        generated(x, c, 2, {"h": "c2"}, at="2026-11-10T10:00:00Z"),
        audit(x, f"{c}.v2", "error"),
        audit(x, f"{c}.v2", "conditional", {"brand": 45, "clarity": 50}),
        generated(x, c, 3, {"h": "c3"}, at="2026-11-10T11:00:00Z", parent_version_id=f"{c}.v2"),
        audit(x, f"{c}.v3", "pass", {"brand": 60}),
        approved(x, f"{c}.v3", "2026-11-10T15:00:00Z"),
        generated(x, d, 1, {"h": "d1"}, kind="visual_concept", at="2026-11-04T09:00:00Z"),
        generated(y, e, 1, {"h": "e1"}, at="2026-11-05T09:00:00Z"),
        audit(y, f"{e}.v1", "fail", {"brand": 30}),
        generated(y, e, 2, {"h": "e2"}, at="2026-11-05T10:00:00Z", parent_version_id=f"{e}.v1"),
        audit(y, f"{e}.v2", "fail", {"brand": 20}),
    ]
    for event in events:
        await ledger.send(event)
    return x, y


async def test_analytics_figures_match_a_hand_computed_set(
    kafka_bootstrap: str, mongodb_uri: str
) -> None:
    # no cache: each request below must see the data as it is
    settings = isolated_settings(kafka_bootstrap, mongodb_uri, analytics_cache_seconds=0)
    async with running_ledger(settings) as ledger:
        x, y = await send_analytics_set(ledger)
        # 21 events, each a change of its campaign: 17 revisions of x and 4 of y
        await ledger.wait_revision(x, 17)
        await ledger.wait_revision(y, 4)
        response = await ledger.http.get("/analytics/iterations")
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["since"] is None and body["until"] is None and body["artifact_type"] is None
        copy, visual = body["types"]
        assert {k: v for k, v in copy.items() if k not in {"by_week", "artifact_type"}} == {
            "artifacts": 4,
            "versions": 8,
            "artifacts_passed": 3,
            "mean_versions_to_first_pass": 2.0,
            "p90_versions_to_first_pass": 3,
            "versions_to_first_pass": [
                {"versions": 1, "artifacts": 1},
                {"versions": 2, "artifacts": 1},
                {"versions": 3, "artifacts": 1},
            ],
            "first_versions_judged": 4,
            "first_pass_rate": 0.25,
            "artifacts_approved": 2,
            "mean_seconds_to_approval": 14400.0,
            "score_change_per_round": {
                "brand": {"mean": 7.5, "rounds": 4},
                "clarity": {"mean": 5.0, "rounds": 1},
            },
            "score_change_by_round": [
                {
                    "round": 1,
                    "categories": {
                        "brand": {"mean": 5.0, "rounds": 3},
                        "clarity": {"mean": 5.0, "rounds": 1},
                    },
                },
                {"round": 2, "categories": {"brand": {"mean": 15.0, "rounds": 1}}},
            ],
        }
        weeks = {w["week"]: w for w in copy["by_week"]}
        assert list(weeks) == ["2026-11-02", "2026-11-09"]
        assert weeks["2026-11-02"]["artifacts"] == 3
        assert weeks["2026-11-02"]["versions"] == 5
        assert weeks["2026-11-02"]["mean_versions_to_first_pass"] == 1.5
        assert weeks["2026-11-02"]["first_pass_rate"] == round(1 / 3, 4)
        assert weeks["2026-11-02"]["mean_seconds_to_approval"] == 7200.0
        assert weeks["2026-11-09"]["artifacts"] == 1
        assert weeks["2026-11-09"]["mean_versions_to_first_pass"] == 3.0
        assert visual["artifact_type"] == "visual_concept"
        assert (visual["artifacts"], visual["versions"], visual["artifacts_passed"]) == (1, 1, 0)
        assert visual["first_pass_rate"] is None and visual["p90_versions_to_first_pass"] is None

        only_visual = (
            await ledger.http.get("/analytics/iterations?artifact_type=visual_concept")
        ).json()
        assert [t["artifact_type"] for t in only_visual["types"]] == ["visual_concept"]
        later = (await ledger.http.get("/analytics/iterations?since=2026-11-09")).json()
        assert [(t["artifact_type"], t["artifacts"]) for t in later["types"]] == [("copy", 1)]
        assert later["since"] == "2026-11-09T00:00:00.000Z"
        earlier = (
            await ledger.http.get(
                "/analytics/iterations",
                params={"until": "2026-11-05T09:00:00+00:00", "artifact_type": "copy"},
            )
        ).json()
        assert [(t["artifact_type"], t["artifacts"]) for t in earlier["types"]] == [("copy", 2)]

        bad = [
            {"since": "yesterday"},
            {"since": "2026-13-01"},
            {"until": "2026-11-05T09:00:00"},  # no zone
            {"since": "2026-11-09", "until": "2026-11-02"},
            {"since": "2026-11-09", "until": "2026-11-09"},
            {"artifact_type": "Copy"},
            {"artifact_type": "copy; drop"},
        ]
        for params in bad:
            refused = await ledger.http.get("/analytics/iterations", params=params)
            assert refused.status_code == 400, (params, refused.status_code)
            assert refused.json()["detail"], params
