"""The Grafana dashboard, as code: grafana-foundation-sdk's builders write
k8s/monitoring/campaign-ledger.json (`python -m dev.dashboard`).

Every panel reads the service's own Prometheus metrics (service/app/telemetry.py);
tests/unit/test_dashboard.py fails when the committed JSON drifts from this file, when a
query names a metric the service does not export, or when the JSON holds anything the
SDK's dashboard schema does not know.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import common, dashboard, prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import (
    BigValueGraphMode,
    GraphDrawStyle,
    LegendDisplayMode,
    LegendPlacement,
    SortOrder,
    StackingMode,
    TooltipDisplayMode,
)
from grafana_foundation_sdk.models.dashboard import DataSourceRef, VariableRefresh

OUTPUT = Path(__file__).resolve().parent.parent / "k8s" / "monitoring" / "campaign-ledger.json"
UID = "campaign-ledger"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
SCOPE = 'namespace=~"$namespace"'
RATE = "$__rate_interval"
WIDTH, HEIGHT = 12, 8


def query(expr: str, legend: str, ref: str = "A") -> prometheus.Dataquery:
    return (
        prometheus.Dataquery()
        .expr(expr)
        .legend_format(legend)
        .ref_id(ref)
        .datasource(DATASOURCE)
        .range()
    )


def quantiles(metric: str, by: str, legend: str) -> list[prometheus.Dataquery]:
    """p50 and p99 of a histogram, per `by`."""
    return [
        query(
            f"histogram_quantile({q}, sum by (le{', ' + by if by else ''}) "
            f"(rate({metric}_bucket{{{SCOPE}}}[{RATE}])))",
            f"p{round(q * 100)} {legend}".strip(),
            ref,
        )
        for q, ref in ((0.5, "A"), (0.99, "B"))
    ]


def series(
    title: str,
    description: str,
    targets: list[prometheus.Dataquery],
    unit: str,
    *,
    stacked: bool = False,
    bars: bool = False,
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .height(HEIGHT)
        .span(WIDTH)
        .fill_opacity(20 if stacked else 8)
        .legend(
            common.VizLegendOptions()
            .show_legend(True)
            .display_mode(LegendDisplayMode.TABLE)
            .placement(LegendPlacement.BOTTOM)
            .calcs(["mean", "max", "lastNotNull"])
        )
        .tooltip(
            common.VizTooltipOptions().mode(TooltipDisplayMode.MULTI).sort(SortOrder.DESCENDING)
        )
    )
    if stacked:
        panel = panel.stacking(common.StackingConfig().mode(StackingMode.NORMAL))
    if bars:
        panel = panel.draw_style(GraphDrawStyle.BARS)
    for target in targets:
        panel = panel.with_target(target)
    return panel


def single(title: str, description: str, expr: str, unit: str) -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .height(4)
        .span(6)
        .graph_mode(BigValueGraphMode.AREA)
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]))
        .with_target(query(expr, title))
    )


def build() -> dict[str, Any]:
    board = (
        dashboard.Dashboard("campaign-ledger")
        .uid(UID)
        .description(
            "campaign-ledger: consumption, batches and their phases, outcomes, held events, "
            "snapshot publication and streams, HTTP reads, MongoDB. Traces: Jaeger or Tempo, "
            "by the traceparent on each published snapshot and dead letter."
        )
        .tags(["campaign-ledger", "kafka", "mongodb"])
        .refresh("30s")
        .time("now-3h", "now")
        .timezone("utc")
        .with_variable(
            dashboard.DatasourceVariable("datasource").label("Prometheus").type("prometheus")
        )
        .with_variable(
            dashboard.QueryVariable("namespace")
            .label("Namespace")
            .datasource(DataSourceRef(type_val="prometheus", uid="${datasource}"))
            .query("label_values(ledger_batch_seconds_count, namespace)")
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
            .include_all(True)
            .all_value(".*")
            .multi(True)
        )
        .with_row(dashboard.Row("Now"))
        .with_panel(
            single(
                "Consumer lag",
                "Records of the input partitions not yet consumed, all instances.",
                f"sum(ledger_consumer_lag{{{SCOPE}}})",
                "short",
            )
        )
        .with_panel(
            single(
                "Held events",
                "Events waiting for their version (alert: CampaignLedgerHeldEventsNearLimit).",
                f"sum(ledger_held_events{{{SCOPE}}})",
                "short",
            )
        )
        .with_panel(
            single(
                "Streams connected",
                "Server-Sent Event streams open now, all API instances.",
                f"sum(ledger_stream_clients{{{SCOPE}}})",
                "short",
            )
        )
        .with_panel(
            single(
                "Stalled consumers",
                "Instances whose progress watchdog fails liveness "
                "(alert: CampaignLedgerConsumerStalled).",
                f"sum(ledger_consumer_stalled{{{SCOPE}}})",
                "short",
            )
        )
        .with_row(dashboard.Row("Consumption"))
        .with_panel(
            series(
                "Consumer lag per partition",
                "End offset minus position of each assigned input partition "
                "(alert: CampaignLedgerConsumerLagGrowing).",
                [
                    query(
                        f"sum by (topic, partition) (ledger_consumer_lag{{{SCOPE}}})",
                        "{{topic}}/{{partition}}",
                    )
                ],
                "short",
            )
        )
        .with_panel(
            series(
                "Events by outcome",
                "Records consumed per second: applied, duplicate, held, rejected.",
                [
                    query(
                        f"sum by (outcome) (rate(ledger_events_total{{{SCOPE}}}[{RATE}]))",
                        "{{outcome}}",
                    )
                ],
                "ops",
                stacked=True,
            )
        )
        .with_panel(
            series(
                "Dead letters by reason",
                "Records sent to the dead-letter topic (alert: CampaignLedgerDeadLetters); "
                "each carries the traceparent of the batch that refused it.",
                [
                    query(
                        f"sum by (reason) (increase(ledger_rejections_total{{{SCOPE}}}[{RATE}]))",
                        "{{reason}}",
                    )
                ],
                "short",
                bars=True,
            )
        )
        .with_panel(
            series(
                "Held events and their age",
                "Waiting now, the oldest one's age against AUDIT_HOLD_SECONDS, and those "
                "expired as held_too_long (alert: CampaignLedgerOrphans).",
                [
                    query(f"sum(ledger_held_events{{{SCOPE}}})", "held", "A"),
                    query(f"max(ledger_held_oldest_age_seconds{{{SCOPE}}})", "oldest age s", "B"),
                    query(f"max(ledger_audit_hold_limit_seconds{{{SCOPE}}})", "hold limit s", "C"),
                    query(
                        f"sum(increase(ledger_held_expired_total{{{SCOPE}}}[{RATE}]))",
                        "expired",
                        "D",
                    ),
                ],
                "short",
            )
        )
        .with_row(dashboard.Row("Batches"))
        .with_panel(
            series(
                "Batch phases (p99)",
                "Where a batch's time goes: wait (oldest record's age at the batch's start), "
                "load, rules, write, commit, publish, ack. The same phases are spans of each "
                "batch's trace.",
                [
                    query(
                        "histogram_quantile(0.99, sum by (le, phase) "
                        f"(rate(ledger_batch_phase_seconds_bucket{{{SCOPE}}}[{RATE}])))",
                        "{{phase}}",
                    )
                ],
                "s",
            )
        )
        .with_panel(
            series(
                "Batch duration and size",
                "Time to store and publish one batch, and records per batch.",
                [
                    *quantiles("ledger_batch_seconds", "", "batch"),
                    query(
                        f"sum(rate(ledger_batch_records_sum{{{SCOPE}}}[{RATE}])) / "
                        f"sum(rate(ledger_batch_records_count{{{SCOPE}}}[{RATE}]))",
                        "records per batch",
                        "C",
                    ),
                ],
                "s",
            )
        )
        .with_panel(
            series(
                "Batch failures by cause",
                "Batches left uncommitted for redelivery (alert: CampaignLedgerBatchesFailing).",
                [
                    query(
                        "sum by (cause) "
                        f"(increase(ledger_batch_failures_total{{{SCOPE}}}[{RATE}]))",
                        "{{cause}}",
                    )
                ],
                "short",
                bars=True,
            )
        )
        .with_panel(
            series(
                "Snapshot revisions and publication delay",
                "Revisions published per second, and from publication (the record's "
                "timestamp) to the API instances' stream feed.",
                [
                    query(
                        f"sum(rate(ledger_snapshot_revisions_total{{{SCOPE}}}[{RATE}]))",
                        "revisions/s",
                        "A",
                    ),
                    *[
                        query(
                            f"histogram_quantile({q}, sum by (le) "
                            f"(rate(ledger_feed_delay_seconds_bucket{{{SCOPE}}}[{RATE}])))",
                            f"feed delay p{round(q * 100)} s",
                            ref,
                        )
                        for q, ref in ((0.5, "B"), (0.99, "C"))
                    ],
                ],
                "short",
            )
        )
        .with_row(dashboard.Row("Reads and streams"))
        .with_panel(
            series(
                "Snapshot reads (HTTP latency)",
                "GET /campaigns/{id}/snapshot: p50 and p99, and how many the cache answered.",
                [
                    *quantiles("ledger_snapshot_read_seconds", "", "read"),
                    query(
                        f"sum by (result) (rate(ledger_snapshot_cache_total{{{SCOPE}}}[{RATE}]))",
                        "cache {{result}}/s",
                        "C",
                    ),
                ],
                "s",
            )
        )
        .with_panel(
            series(
                "Streams",
                "Open SSE streams, revisions slow clients skipped, streams refused with 503.",
                [
                    query(f"sum(ledger_stream_clients{{{SCOPE}}})", "open", "A"),
                    query(
                        f"sum(rate(ledger_stream_skipped_total{{{SCOPE}}}[{RATE}]))",
                        "skipped/s",
                        "B",
                    ),
                    query(
                        f"sum(rate(ledger_stream_refused_total{{{SCOPE}}}[{RATE}]))",
                        "refused/s",
                        "C",
                    ),
                ],
                "short",
            )
        )
        .with_row(dashboard.Row("MongoDB"))
        .with_panel(
            series(
                "MongoDB command time (p99)",
                "How long MongoDB took to answer each command, by command and collection.",
                [
                    query(
                        "histogram_quantile(0.99, sum by (le, command, collection) "
                        f"(rate(ledger_mongodb_command_seconds_bucket{{{SCOPE}}}[{RATE}])))",
                        "{{command}} {{collection}}",
                    )
                ],
                "s",
            )
        )
        .with_panel(
            series(
                "MongoDB commands per second",
                "Commands sent, by command and collection.",
                [
                    query(
                        "sum by (command, collection) "
                        f"(rate(ledger_mongodb_command_seconds_count{{{SCOPE}}}[{RATE}]))",
                        "{{command}} {{collection}}",
                    )
                ],
                "ops",
            )
        )
    )
    encoded: dict[str, Any] = json.loads(json.dumps(board.build(), cls=JSONEncoder))
    for number, panel in enumerate(encoded["panels"], 1):
        panel["id"] = number  # stable ids: links to a panel (viewPanel=N) keep working
    return encoded


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"


def main() -> int:
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(render())
    print(OUTPUT.relative_to(Path.cwd()) if OUTPUT.is_relative_to(Path.cwd()) else OUTPUT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
