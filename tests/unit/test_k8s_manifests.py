"""The manifests agree with the service and with each other (k8s/).

`make lint-k8s` validates their shape; this checks what a schema cannot: the Strimzi topics
and ACLs match the service's topics and group, KEDA never scales past the partition count,
every alert reads a metric the service exports, no Secret sits in the base.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from prometheus_client import REGISTRY

from service.app import telemetry  # noqa: F401 - registers the service's metrics
from service.settings import Settings
from tests.unit.manifests import K8S, base_settings


def documents(*parts: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for path in sorted(K8S.joinpath(*parts).glob("*.yaml")):
        found.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return found


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d.get("kind") == kind]


def production_literals() -> dict[str, str]:
    kustomization = yaml.safe_load((K8S / "overlays/production/kustomization.yaml").read_text())
    (generator,) = kustomization["configMapGenerator"]
    return dict(literal.split("=", 1) for literal in generator["literals"])


def all_topics(settings: Settings) -> set[str]:
    return {*settings.input_topics, settings.topic_snapshot_updated, settings.topic_dead_letter}


def test_strimzi_topics_match_the_service() -> None:
    settings = base_settings()
    production = production_literals()
    topics = {
        t["spec"]["topicName"]: t["spec"]
        for t in of_kind(documents("examples/strimzi"), "KafkaTopic")
    }
    assert set(topics) == all_topics(settings)
    for name, spec in topics.items():
        assert spec["partitions"] == settings.kafka_topic_partitions, name
        assert spec["replicas"] == int(production["KAFKA_TOPIC_REPLICATION_FACTOR"]) == 3, name
        assert int(spec["config"]["min.insync.replicas"]) == 2, name
    assert topics[settings.topic_snapshot_updated]["config"]["cleanup.policy"] == "compact"
    # The operator makes the topics: the service must neither create nor need to.
    assert production["KAFKA_CREATE_TOPICS"] == "false"


def acl_rights(user: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
    rights: dict[tuple[str, str], set[str]] = {}
    for acl in user["spec"]["authorization"]["acls"]:
        resource = acl["resource"]
        assert resource["patternType"] == "literal"
        key = (resource["type"], resource["name"])
        rights.setdefault(key, set()).update(acl["operations"])
    return rights


def test_strimzi_user_has_exactly_the_rights_the_service_uses() -> None:
    settings = base_settings()
    users = {u["metadata"]["name"]: u for u in of_kind(documents("examples/strimzi"), "KafkaUser")}
    service = users[production_literals()["KAFKA_SASL_USERNAME"]]
    assert service["spec"]["authentication"]["type"] == "scram-sha-512"
    expected = {("topic", t): {"Read", "Write", "Describe"} for t in all_topics(settings)}
    expected[("group", settings.kafka_group_id)] = {"Read"}
    assert acl_rights(service) == expected
    # KEDA's user only reads offsets.
    keda = {("topic", t): {"Describe"} for t in settings.input_topics}
    keda[("group", settings.kafka_group_id)] = {"Describe"}
    assert acl_rights(users["campaign-ledger-keda"]) == keda


def test_keda_scales_consumers_on_lag_never_past_the_partitions() -> None:
    settings = base_settings()
    (scaled,) = of_kind(documents("components/keda"), "ScaledObject")
    spec = scaled["spec"]
    assert spec["scaleTargetRef"]["name"] == "campaign-ledger-consumer"
    assert spec["maxReplicaCount"] == settings.kafka_topic_partitions
    assert spec["minReplicaCount"] >= 1  # maintenance runs in the consumer role
    triggers = spec["triggers"]
    assert {t["metadata"]["topic"] for t in triggers} == set(settings.input_topics)
    for trigger in triggers:
        assert trigger["type"] == "kafka"
        assert trigger["metadata"]["consumerGroup"] == settings.kafka_group_id
        assert trigger["metadata"]["allowIdleConsumers"] == "false"
        assert (
            trigger["metadata"]["bootstrapServers"]
            == production_literals()["KAFKA_BOOTSTRAP_SERVERS"]
        )


def test_every_alert_reads_metrics_the_service_exports() -> None:
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}
    exported = {
        family.name + suffix
        for family in REGISTRY.collect()
        for suffix in ("", *suffixes.get(family.type, ()))
    }
    (rule,) = of_kind(documents("components/monitoring"), "PrometheusRule")
    alerts = [r for group in rule["spec"]["groups"] for r in group["rules"]]
    assert {a["alert"] for a in alerts} >= {
        "CampaignLedgerConsumerLagGrowing",
        "CampaignLedgerConsumerStalled",
        "CampaignLedgerDeadLetters",
        "CampaignLedgerHeldEventsNearLimit",
        "CampaignLedgerOrphans",
    }
    for alert in alerts:
        used = set(re.findall(r"\bledger_[a-z_]+", alert["expr"]))
        assert used, alert["alert"]
        assert used <= exported, (alert["alert"], used - exported)


def test_roles_and_ports() -> None:
    deployments = {d["metadata"]["name"]: d for d in of_kind(documents("base"), "Deployment")}
    settings = base_settings()
    for role in ("consumer", "api"):
        (container,) = deployments[f"campaign-ledger-{role}"]["spec"]["template"]["spec"][
            "containers"
        ]
        assert container["command"] == ["campaign-ledger", "serve", "--role", role]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["metrics"] == settings.management_port
        if role == "api":
            assert ports["http"] == settings.http_port
        else:
            assert "http" not in ports  # consumers serve no API
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert container[probe]["httpGet"]["port"] == "metrics"
    (service,) = of_kind(documents("base"), "Service")
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]


def test_no_secret_in_the_base() -> None:
    assert of_kind(documents("base"), "Secret") == []
    kustomization = yaml.safe_load((K8S / "base/kustomization.yaml").read_text())
    assert "secretGenerator" not in kustomization
