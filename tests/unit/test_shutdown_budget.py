"""The shutdown budget: what the manifests give a pod to stop covers what the service takes.

On termination Kubernetes runs preStop, then sends SIGTERM; the service drains open HTTP
connections (uvicorn's graceful timeout), then stops the consumer, which finishes the batch
in flight (the broker's graceful timeout), then closes MongoDB. All of it must end before
terminationGracePeriodSeconds, or the pod is SIGKILLed mid-batch. Read from the manifests and
from the service's own configuration, so neither can drift alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from service.adapters.kafka.broker import build_broker
from service.commands.serve import uvicorn_config
from service.settings import Settings
from tests.unit.manifests import K8S, ROOT, base_settings, only_these

BASE = K8S / "base"
DEPLOYMENTS = sorted(BASE.glob("deployment-*.yaml"))
# Closing MongoDB's client and leaving the process: seconds kept free beyond the two drains.
EXIT_MARGIN_SECONDS = 5


def pod_spec(path: Path) -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load(path.read_text())["spec"]["template"]["spec"]
    return spec


def pre_stop_seconds(container: dict[str, Any]) -> float:
    pre_stop = container["lifecycle"]["preStop"]
    if "sleep" in pre_stop:
        return float(pre_stop["sleep"]["seconds"])
    command = pre_stop["exec"]["command"]
    assert command[0] == "sleep", command
    return float(command[1])


def test_the_manifests_exist() -> None:
    assert [p.name for p in DEPLOYMENTS] == ["deployment-api.yaml", "deployment-consumer.yaml"]


def test_the_service_uses_its_settings_for_both_drains() -> None:
    settings = base_settings()
    broker = build_broker(settings)
    assert broker.config.graceful_timeout == settings.kafka_shutdown_timeout_seconds
    config = uvicorn_config(object(), settings, settings.http_port)
    assert config.timeout_graceful_shutdown == settings.http_shutdown_timeout_seconds


@pytest.mark.parametrize("path", DEPLOYMENTS, ids=lambda p: p.stem)
def test_pre_stop_and_both_drains_fit_in_the_grace_period(path: Path) -> None:
    settings = base_settings()
    spec = pod_spec(path)
    (container,) = spec["containers"]
    budget = (
        pre_stop_seconds(container)
        + settings.http_shutdown_timeout_seconds
        + settings.kafka_shutdown_timeout_seconds
        + EXIT_MARGIN_SECONDS
    )
    grace = spec["terminationGracePeriodSeconds"]
    assert budget <= grace, f"{path.name}: preStop + drains + margin = {budget} s > {grace} s"


@pytest.mark.parametrize("path", DEPLOYMENTS, ids=lambda p: p.stem)
def test_readiness_answers_within_its_probe_timeout(path: Path) -> None:
    settings = base_settings()
    (container,) = pod_spec(path)["containers"]
    probe_timeout = container["readinessProbe"]["timeoutSeconds"]
    # The checks run concurrently, each cut at READINESS_TIMEOUT_SECONDS; keep a margin for
    # the request itself.
    assert settings.readiness_timeout_seconds + 0.5 <= probe_timeout


def test_defaults_fit_the_compose_stop_grace_period() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    ledger = compose["services"]["ledger"]
    grace = float(ledger["stop_grace_period"].removesuffix("s"))
    env = {k.lower(): v for k, v in ledger["environment"].items()}
    settings = only_these(
        {k: env[k] for k in ("http_shutdown_timeout_seconds", "kafka_shutdown_timeout_seconds")}
    )
    drains = settings.http_shutdown_timeout_seconds + settings.kafka_shutdown_timeout_seconds
    assert drains + EXIT_MARGIN_SECONDS <= grace
    # And the defaults, for `make run` and anyone who sets nothing.
    defaults = Settings.defaults()
    assert (
        defaults.http_shutdown_timeout_seconds + defaults.kafka_shutdown_timeout_seconds == drains
    )
