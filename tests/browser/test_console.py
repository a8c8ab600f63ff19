"""The console in a real browser: Debian's headless Chromium driven by Playwright.

The page must show a campaign sent through Kafka and follow it live: a new version and its
audit, sent while the page is open, must appear without a reload (the test fails otherwise).
It also takes a screenshot: into .cache/ by default (a test run leaves the tree clean);
`CONSOLE_SCREENSHOT=docs/console.png make test` refreshes the README's.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.events import cloud_event, lifecycle
from tests.integration.harness import Ledger

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / os.environ.get("CONSOLE_SCREENSHOT", ".cache/console.png")
TOKEN = "console-test-token"

if not CHROMIUM.exists() and not shutil.which("chromium"):
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the browser test: {CHROMIUM} is missing", pytrace=False)
    pytest.skip(
        f"Debian's chromium is not installed ({CHROMIUM}); `apt-get install chromium` "
        "(CI installs it and never skips)",
        allow_module_level=True,
    )

from playwright.async_api import Page, expect  # noqa: E402


def version(campaign: str, artifact: str, n: int, **extra: Any) -> dict[str, Any]:
    return lifecycle(
        "campaign.artifact.generated",
        campaign,
        artifact_id=artifact,
        artifact_type="copy" if artifact.endswith("copy") else "visual_concept",
        version_id=f"{artifact}.v{n}",
        content={"headline": f"Spring is here, take {n}"},
        run_id=f"{campaign}.run-1",
        **extra,
    )


def audit(campaign: str, version_id: str, outcome: str, score: int) -> dict[str, Any]:
    return lifecycle(
        "campaign.audit.completed",
        campaign,
        version_id=version_id,
        outcome=outcome,
        category_scores={"brand": {"score": score}, "clarity": {"score": score - 4}},
    )


@pytest.fixture
def api_token() -> str:
    return TOKEN


async def test_console_shows_a_campaign_and_follows_it_live(
    served: tuple[Ledger, str], page: Page
) -> None:
    ledger, url = served
    campaign = f"spring-{uuid.uuid4().hex[:6]}"
    copy, visual = f"{campaign}.copy", f"{campaign}.visual"
    await ledger.send(lifecycle("campaign.created", campaign, name="Spring launch (browser test)"))
    await ledger.send(lifecycle("campaign.run.started", campaign, run_id=f"{campaign}.run-1"))
    await ledger.send(version(campaign, copy, 1))
    await ledger.send(audit(campaign, f"{copy}.v1", "fail", 48))
    await ledger.send(version(campaign, visual, 1))
    await ledger.send(audit(campaign, f"{visual}.v1", "pass", 91))
    await ledger.send_raw("artifact", b"{not json", key=campaign.encode())
    await ledger.wait_revision(campaign, 6)
    await ledger.dead_letters()

    await page.goto(f"{url}/")
    # API_TOKENS is set: the page asks for the token once
    await expect(page.get_by_label("API token")).to_be_visible()
    await page.get_by_label("API token").fill(TOKEN)
    await page.get_by_role("button", name="Use this token").click()

    entry = page.locator(f'li[data-campaign="{campaign}"] button')
    await expect(entry).to_contain_text("Spring launch (browser test)")
    await entry.click()
    row = page.locator(f'#artifacts tr[data-artifact="{copy}"]')
    await expect(row.locator(".active-version")).to_contain_text("v1")
    await expect(row.locator(".badge")).to_have_text("failed")
    await expect(page.locator("#dead-letters")).to_contain_text("not_json")

    # while the page is open: feedback, the version it led to, and that version's audit
    feedback_id = uuid.uuid4().hex
    await ledger.send(
        cloud_event(
            "campaign.feedback.submitted",
            {
                "campaign_id": campaign,
                "artifact_id": copy,
                "version_id": f"{copy}.v1",
                "feedback_text": "Warmer tone, shorter headline",
            },
            id=feedback_id,
        ),
        kind="feedback",
    )
    await ledger.send(
        version(campaign, copy, 2, parent_version_id=f"{copy}.v1", feedback_id=feedback_id)
    )
    await ledger.send(audit(campaign, f"{copy}.v2", "pass", 88))
    await ledger.send(lifecycle("campaign.version.approved", campaign, version_id=f"{copy}.v2"))
    await ledger.send(
        lifecycle(
            "campaign.run.completed", campaign, run_id=f"{campaign}.run-1", status="completed"
        )
    )
    await ledger.wait_revision(campaign, 11)

    await expect(row.locator(".active-version")).to_contain_text("v2", timeout=15_000)
    await expect(row.locator(".badge")).to_have_text("passed")
    await expect(row.locator("td").last).to_have_text("yes")
    await expect(page.locator("#campaign-revision")).to_have_text("11")
    history = page.locator(f'li[data-version="{copy}.v1"]')
    await expect(history).to_contain_text("Warmer tone, shorter headline")
    await expect(history).to_contain_text("led to v2")
    await expect(page.locator(f'li[data-version="{copy}.v2"]')).to_contain_text("attempt 1")

    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOT), full_page=True)
