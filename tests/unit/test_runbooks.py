"""Every alert of the PrometheusRule has a runbook, linked from its `runbook_url`.

A runbook (docs/runbooks/<alert>.md) says what the alert means, how to confirm it with the
dashboard and a trace, and what to do; the dashboard panels it names exist, so a renamed
panel cannot leave an operator looking for it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
RUNBOOKS = REPO / "docs" / "runbooks"
RULE = REPO / "k8s" / "components" / "monitoring" / "prometheusrule.yaml"
DASHBOARD = REPO / "k8s" / "monitoring" / "campaign-ledger.json"
SECTIONS = ("## Meaning", "## Confirm", "## What to do")


def alerts() -> list[dict[str, Any]]:
    rule = yaml.safe_load(RULE.read_text())
    return [r for group in rule["spec"]["groups"] for r in group["rules"] if "alert" in r]


def panel_titles() -> set[str]:
    board = json.loads(DASHBOARD.read_text())
    return {panel["title"] for panel in board["panels"]}


def test_every_alert_links_its_runbook() -> None:
    found = alerts()
    assert len(found) >= 6
    for alert in found:
        name = alert["alert"]
        url = alert["annotations"]["runbook_url"]
        assert url.startswith("https://"), name
        assert url.endswith(f"/docs/runbooks/{name}.md"), (name, url)
        assert (RUNBOOKS / f"{name}.md").is_file(), name


def test_every_runbook_explains_confirms_and_acts() -> None:
    titles = panel_titles()
    for alert in alerts():
        name = alert["alert"]
        text = (RUNBOOKS / f"{name}.md").read_text()
        assert text.startswith(f"# {name}\n"), name
        positions = [text.find(section) for section in SECTIONS]
        assert all(p >= 0 for p in positions) and positions == sorted(positions), name
        confirm = text[positions[1] : positions[2]]
        cited = re.findall(r'panel "([^"]+)"', text, flags=re.IGNORECASE)
        cited += re.findall(r'^- Dashboard: panel "([^"]+)"', text, flags=re.MULTILINE)
        assert cited, f"{name}: no dashboard panel named"
        assert set(cited) <= titles, (name, set(cited) - titles)
        assert "trace" in confirm.lower(), f"{name}: no trace to confirm it with"


def test_no_runbook_without_an_alert() -> None:
    names = {alert["alert"] for alert in alerts()}
    pages = {path.stem for path in RUNBOOKS.glob("*.md")} - {"README"}
    assert pages == names
