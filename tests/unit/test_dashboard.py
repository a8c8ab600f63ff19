"""The Grafana dashboard (k8s/monitoring/) reads what the service exports and is valid.

- Every metric a query names is in the service's Prometheus registry (the metrics module is
  imported, its families collected, with the suffixes Prometheus adds to counters and
  histograms), so a renamed metric cannot leave a panel silently empty.
- The JSON goes through grafana-foundation-sdk's dashboard models (`Dashboard.from_json`,
  panel and query plugins registered) and back unchanged: a field the SDK's schema does not
  know, or a value of the wrong shape, would not survive the round trip.
- The committed JSON is what dev/dashboard.py (the SDK's builders) writes, and a ConfigMap
  with the `grafana_dashboard` label provisions it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models.dashboard import Dashboard
from prometheus_client import REGISTRY

from dev import dashboard as source
from service.app import telemetry  # noqa: F401 - registers the service's metrics

MONITORING = Path(__file__).resolve().parents[2] / "k8s" / "monitoring"
DASHBOARD = MONITORING / "campaign-ledger.json"


def committed() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for panel in board["panels"]:
        found.append(panel)
        found.extend(panel.get("panels") or [])  # a collapsed row keeps its panels inside
    return found


def exported_names() -> set[str]:
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}
    return {
        family.name + suffix
        for family in REGISTRY.collect()
        for suffix in ("", *suffixes.get(family.type, ()))
    }


def test_every_query_reads_a_metric_the_service_exports() -> None:
    exported = exported_names()
    queries = [
        (panel["title"], target["expr"])
        for panel in panels(committed())
        for target in panel.get("targets") or []
    ]
    assert len(queries) >= 20
    for variable in committed()["templating"]["list"]:
        if variable["type"] == "query":
            queries.append((variable["name"], variable["query"]))
    for title, expr in queries:
        used = set(re.findall(r"\bledger_[a-z_]+", expr))
        assert used, (title, expr)
        assert used <= exported, (title, used - exported)


def test_it_covers_what_operators_look_at() -> None:
    exprs = " ".join(t["expr"] for p in panels(committed()) for t in p.get("targets") or [])
    for metric in (
        "ledger_consumer_lag",  # lag per partition
        "ledger_batch_phase_seconds_bucket",  # batch phases
        "ledger_events_total",  # applied / held / duplicate / rejected
        "ledger_rejections_total",  # dead letters by reason
        "ledger_feed_delay_seconds_bucket",  # snapshot publication delay
        "ledger_stream_clients",  # streams connected
        "ledger_snapshot_read_seconds_bucket",  # HTTP latency
        "ledger_mongodb_command_seconds_bucket",  # MongoDB command time
    ):
        assert metric in exprs, metric


def test_the_sdk_schema_round_trips_it_unchanged() -> None:
    register_default_plugins()
    board = committed()
    again = json.loads(json.dumps(Dashboard.from_json(board), cls=JSONEncoder))
    assert again == board
    # The check can fail: a field the schema does not know is lost on the way.
    board["panels"][1]["colour"] = "red"
    assert json.loads(json.dumps(Dashboard.from_json(board), cls=JSONEncoder)) != board


def test_the_layout_is_sound() -> None:
    board = committed()
    assert board["uid"] == source.UID
    ids = [p["id"] for p in panels(board) if "id" in p]
    assert len(ids) == len(set(ids))
    for panel in panels(board):
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        assert panel["description"], panel["title"]


def test_the_committed_json_is_what_the_code_writes() -> None:
    assert DASHBOARD.read_text() == source.render(), "run `python -m dev.dashboard`"


def test_a_configmap_with_the_grafana_label_provisions_it() -> None:
    component = yaml.safe_load((MONITORING / "kustomization.yaml").read_text())
    assert component["kind"] == "Component"
    (generator,) = component["configMapGenerator"]
    assert generator["files"] == [DASHBOARD.name]
    assert generator["options"]["labels"] == {"grafana_dashboard": "1"}
    production = yaml.safe_load(
        (MONITORING.parent / "overlays" / "production" / "kustomization.yaml").read_text()
    )
    assert "../../monitoring" in production["components"]
