"""Reads beside the streams: the audit lineage targeted at one campaign (one shard)."""

from __future__ import annotations

from tests.events import cloud_event
from tests.integration.harness import Ledger, new_id


async def test_targeted_audits_answer_as_the_old_route_and_404_outside_the_campaign(
    ledger: Ledger,
) -> None:
    campaign, other, artifact = new_id("c"), new_id("c"), new_id("a")
    version = f"{artifact}.v1"
    await ledger.send(
        cloud_event(
            "campaign.artifact.generated",
            {
                "campaign_id": campaign,
                "artifact_id": artifact,
                "artifact_type": "copy",
                "version_id": version,
                "content": {"text": "hello"},
            },
        )
    )
    for outcome in ("error", "pass"):
        await ledger.send(
            cloud_event(
                "campaign.audit.completed",
                {"campaign_id": campaign, "version_id": version, "outcome": outcome},
            )
        )
    await ledger.send(cloud_event("campaign.created", {"campaign_id": other, "name": "Other"}))
    await ledger.wait_revision(campaign, 3)
    await ledger.wait_revision(other, 1)

    old = await ledger.http.get(f"/versions/{version}/audits")
    targeted = await ledger.http.get(f"/campaigns/{campaign}/versions/{version}/audits")
    assert targeted.status_code == 200 and targeted.json() == old.json()
    assert [a["attempt"] for a in targeted.json()["items"]] == [1, 2]
    assert targeted.json()["audit_state"] == "passed"
    elsewhere = await ledger.http.get(f"/campaigns/{other}/versions/{version}/audits")
    assert elsewhere.status_code == 404
    unknown = await ledger.http.get(f"/campaigns/{campaign}/versions/nope/audits")
    assert unknown.status_code == 404
