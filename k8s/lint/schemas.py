"""Kubernetes JSON Schemas for kubeconform, offline, from the kubernetes-validate package.

kubernetes-validate (PyPI) ships the strict schemas of every Kubernetes minor version; its
files name their definitions by absolute `$id`/`$ref` URLs that only its own resolver maps
to files. This rewrites them as plain files whose `$ref`s are relative, in the layout
kubeconform's `-schema-location DIR/{{ .NormalizedKubernetesVersion }}/...` expects.

    python k8s/lint/schemas.py OUT_DIR 1.31.0 1.35.0
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate  # the tools venv's package (make k8s-tools)

SOURCE = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"


def _relative(node: Any) -> Any:
    if isinstance(node, dict):
        node.pop("$id", None)
        return {
            key: (
                value.replace("/api/_definitions.json", "_definitions.json")
                if key == "$ref" and isinstance(value, str)
                else _relative(value)
            )
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_relative(item) for item in node]
    return node


def convert(out: Path, version: str) -> None:
    source = SOURCE / f"v{version}-local-strict"
    if not source.is_dir():
        raise SystemExit(f"kubernetes-validate has no schemas for {version}")
    target = out / f"v{version}"
    target.mkdir(parents=True, exist_ok=True)
    for path in source.glob("*.json"):
        schema = _relative(json.loads(path.read_text()))
        (target / path.name).write_text(json.dumps(schema))


def main(argv: list[str]) -> None:
    out = Path(argv[0])
    for version in argv[1:]:
        convert(out, version)


if __name__ == "__main__":
    main(sys.argv[1:])
