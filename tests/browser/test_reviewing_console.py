"""The console's reviewing views in Debian's headless Chromium (Playwright), fed through Kafka.

A reviewer opens a campaign, reads v2's content, opens the changes v1 -> v2 and sees the
changed words and the feedback between them, sees a score chart with one point per version,
and watches an open version's audit arrive live. Content holding markup must show as text
and run nothing: the test looks for elements the markup would make, so it fails if the page
ever parses content as HTML (the page's CSP would block an inline handler, so a missing
dialog alone would prove nothing). Then the analytics page.

Screenshots go to .cache/ by default; `REVIEW_SCREENSHOTS=docs make test` refreshes the
ones in docs/ (docs/reviewing-version.png, -diff.png, -analytics.png).
"""

from __future__ import annotations

import os
import shutil
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.events import cloud_event, lifecycle
from tests.integration.harness import Ledger

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / os.environ.get("REVIEW_SCREENSHOTS", ".cache")
TOKEN = "review-console-token"

if not CHROMIUM.exists() and not shutil.which("chromium"):
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the browser test: {CHROMIUM} is missing", pytrace=False)
    pytest.skip(
        f"Debian's chromium is not installed ({CHROMIUM}); `apt-get install chromium`",
        allow_module_level=True,
    )

from playwright.async_api import Dialog, Page, expect  # noqa: E402

MARKUP = {
    "headline": "<script>alert(1)</script>",
    "body": "<img src=x onerror=\"document.title='pwned'\">",
    "nested": {"html": "<b>bold</b> & <i>italic</i>", "list": ["<svg onload=alert(3)>"]},
}


def version(campaign: str, artifact: str, n: int, content: dict[str, Any], **extra: Any) -> Any:
    return lifecycle(
        "campaign.artifact.generated",
        campaign,
        artifact_id=artifact,
        artifact_type="copy",
        version_id=f"{artifact}.v{n}",
        content=content,
        **extra,
    )


def audit(campaign: str, version_id: str, outcome: str, brand: int, clarity: int) -> Any:
    return lifecycle(
        "campaign.audit.completed",
        campaign,
        version_id=version_id,
        outcome=outcome,
        category_scores={"brand": {"score": brand}, "clarity": {"score": clarity}},
    )


@pytest.fixture
def api_token() -> str:
    return TOKEN


async def test_reviewer_reads_content_diff_chart_and_analytics(
    served: tuple[Ledger, str], page: Page
) -> None:
    ledger, url = served
    campaign = f"review-{uuid.uuid4().hex[:6]}"
    copy, markup = f"{campaign}.copy", f"{campaign}.markup"
    feedback_id = uuid.uuid4().hex
    await ledger.send(lifecycle("campaign.created", campaign, name="Spring review (browser test)"))
    await ledger.send(
        version(
            campaign,
            copy,
            1,
            {"headline": "Spring is here", "body": "Fresh colours for the new season."},
        )
    )
    await ledger.send(audit(campaign, f"{copy}.v1", "fail", 48, 44))
    await ledger.send(
        cloud_event(
            "campaign.feedback.submitted",
            {
                "campaign_id": campaign,
                "artifact_id": copy,
                "version_id": f"{copy}.v1",
                "feedback_text": "Warmer tone, and say it is finally here",
            },
            id=feedback_id,
        ),
        kind="feedback",
    )
    await ledger.send(
        version(
            campaign,
            copy,
            2,
            {"headline": "Spring is finally here", "body": "Warm colours for the new season."},
            parent_version_id=f"{copy}.v1",
            feedback_id=feedback_id,
        )
    )
    await ledger.send(audit(campaign, f"{copy}.v2", "conditional", 71, 66))
    await ledger.send(version(campaign, markup, 1, MARKUP))
    history = await send_history(ledger)
    await ledger.wait_revision(campaign, 7)
    await ledger.wait_revision(history, 60)

    dialogs: list[str] = []

    async def dismiss(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        await dialog.dismiss()

    page.on("dialog", dismiss)
    await page.goto(f"{url}/")
    await page.get_by_label("API token").fill(TOKEN)
    await page.get_by_role("button", name="Use this token").click()
    await page.locator(f'li[data-campaign="{campaign}"] button').click()

    # v2's content, as text
    v2 = page.locator(f'li[data-version="{copy}.v2"]')
    await v2.get_by_role("button", name="Read v2").click()
    panel = page.locator("#version-panel")
    await expect(panel).to_be_visible()
    await expect(panel.locator("#version-title")).to_have_text(f"{copy} · v2")
    content = panel.get_by_test_id("version-content")
    await expect(content).to_contain_text("Spring is finally here")
    await expect(content).to_contain_text("Warm colours for the new season.")
    await expect(panel).to_contain_text("attempt 1, conditional · brand 71, clarity 66")
    await panel.screenshot(path=str(_shot("reviewing-version.png")))

    # the changes v1 -> v2: changed words marked, the feedback highlighted
    await v2.get_by_role("button", name="Changes from v1").click()
    diff = page.locator("#diff-panel")
    await expect(diff).to_be_visible()
    await expect(panel).to_be_hidden()
    await expect(diff.locator("#diff-title")).to_have_text(f"{copy} · v1 → v2")
    await expect(diff.locator(".feedback-highlight mark")).to_have_text(
        "Warmer tone, and say it is finally here"
    )
    headline = diff.locator('li.change[data-path="/headline"]')
    await expect(headline.locator("ins")).to_have_text(["finally "])
    await expect(headline.locator("del")).to_have_count(0)
    body = diff.locator('li.change[data-path="/body"]')
    await expect(body.locator("del")).to_have_text(["Fresh"])
    await expect(body.locator("ins")).to_have_text(["Warm"])
    await diff.screenshot(path=str(_shot("reviewing-diff.png")))

    # the score chart: one point per version and category, and it follows new versions live
    chart = page.locator(f'svg.score-chart[data-artifact="{copy}"]')
    await expect(chart.locator('g[data-category="brand"] circle')).to_have_count(2)
    await expect(chart.locator('g[data-category="clarity"] circle')).to_have_count(2)
    await ledger.send(
        version(
            campaign,
            copy,
            3,
            {"headline": "Spring is finally here!", "body": "Warm colours for the new season."},
            parent_version_id=f"{copy}.v2",
        )
    )
    v3 = page.locator(f'li[data-version="{copy}.v3"]')
    await v3.get_by_role("button", name="Read v3").click(timeout=15_000)
    await expect(panel).to_contain_text("Not audited yet.")
    await ledger.send(audit(campaign, f"{copy}.v3", "pass", 88, 84))
    # the open panel follows the campaign's stream: the audit shows without a click
    await expect(panel).to_contain_text("attempt 1, pass · brand 88, clarity 84", timeout=15_000)
    await expect(chart.locator('g[data-category="brand"] circle')).to_have_count(3)
    await expect(chart.locator("g[data-category] circle")).to_have_count(6)

    # markup in content is shown as text and runs nothing
    await (
        page.locator(f'li[data-version="{markup}.v1"]')
        .get_by_role("button", name="Read v1")
        .click()
    )
    await expect(panel.locator("#version-title")).to_have_text(f"{markup} · v1")
    content = panel.get_by_test_id("version-content")
    await expect(content).to_contain_text("<script>alert(1)</script>")
    await expect(content).to_contain_text("<img src=x onerror=\"document.title='pwned'\">")
    await expect(content).to_contain_text("<b>bold</b> & <i>italic</i>")
    await expect(content).to_contain_text("<svg onload=alert(3)>")
    for tag in ("script", "img", "b", "i", "svg"):
        await expect(content.locator(tag)).to_have_count(0)
    assert await page.evaluate("document.querySelectorAll('img').length") == 0
    assert await page.title() == "campaign-ledger console"
    assert dialogs == []

    # analytics across campaigns
    await page.get_by_role("link", name="Analytics").click()
    figures = page.locator('section.type-figures[data-artifact-type="copy"]')
    await expect(figures).to_be_visible(timeout=15_000)
    # copy: 2 artifacts (the copy, 3 versions, passed at 3; the markup one, unaudited)
    await expect(figures.locator(".counts")).to_contain_text("Artifacts2")
    await expect(figures.locator(".counts")).to_contain_text("Versions4")
    await expect(figures.locator(".counts")).to_contain_text("Versions until passed (mean)3")
    await expect(figures.locator(".score-changes")).to_contain_text("brand")
    await expect(figures.locator("svg.trend-chart")).to_have_count(1)
    trend = page.locator('section.type-figures[data-artifact-type="short_copy"]')
    await expect(trend.locator("table.weeks tbody tr")).to_have_count(6)
    await expect(
        trend.locator('svg.trend-chart g[data-series="first-pass rate"] circle')
    ).to_have_count(6)
    await page.locator("#analytics-view").screenshot(path=str(_shot("reviewing-analytics.png")))
    # a bad type is refused by the service and said so on the page
    await page.locator('#analytics-form input[name="artifact_type"]').evaluate(
        "input => input.removeAttribute('pattern')"
    )
    await page.locator('#analytics-form input[name="artifact_type"]').fill("Not A Type")
    await page.get_by_role("button", name="Show").click()
    await expect(page.locator("#analytics-error")).to_contain_text("is not an artifact type")


async def send_history(ledger: Ledger) -> str:
    """Earlier weeks of another type, so the analytics page has a trend to draw: in week k of
    six, two short_copy artifacts, each failing k % 3 times before it passes, then approved."""
    campaign = f"history-{uuid.uuid4().hex[:6]}"
    start = datetime.now(UTC) - timedelta(weeks=6)
    for week in range(6):
        for index in range(2):
            artifact = f"{campaign}.w{week}.{index}"
            fails = (week + index) % 3
            for n in range(1, fails + 2):
                at = start + timedelta(weeks=week, hours=n)
                passed = n == fails + 1
                await ledger.send(
                    cloud_event(
                        "campaign.artifact.generated",
                        {
                            "campaign_id": campaign,
                            "artifact_id": artifact,
                            "artifact_type": "short_copy",
                            "version_id": f"{artifact}.v{n}",
                            "content": {"text": f"take {n}"},
                            "generated_at": at.isoformat(),
                        },
                    )
                )
                score = 50 + 12 * n + week
                await ledger.send(
                    audit(
                        campaign, f"{artifact}.v{n}", "pass" if passed else "fail", score, score - 8
                    )
                )
            await ledger.send(
                cloud_event(
                    "campaign.version.approved",
                    {"campaign_id": campaign, "version_id": f"{artifact}.v{fails + 1}"},
                    time=(start + timedelta(weeks=week, hours=fails + 4)).isoformat(),
                )
            )
    return campaign


def _shot(name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    return SHOTS / name
