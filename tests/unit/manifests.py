"""Reading k8s/ for the tests that hold the manifests and the service together."""

from __future__ import annotations

from pathlib import Path

from service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"


def env_file(path: Path) -> dict[str, str]:
    """A kustomize env file: KEY=value lines, # comments."""
    lines = [line for line in path.read_text().splitlines() if line and line[0] != "#"]
    return dict(line.split("=", 1) for line in lines)


def only_these(values: dict[str, str]) -> Settings:
    """Settings from these values and the defaults, nothing from the environment."""
    isolated: type[Settings] = type(Settings.defaults())
    return isolated(**values)


def base_settings() -> Settings:
    """What a pod gets from the base ConfigMap (k8s/base/config.env)."""
    values = env_file(K8S / "base" / "config.env")
    return only_these({key.lower(): value for key, value in values.items()})
