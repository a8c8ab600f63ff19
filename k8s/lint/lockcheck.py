"""The image's lock (requirements-image.lock) pins every direct dependency as pyproject.toml
and requirements-image.in do; `make lock` regenerates it when they change.

    python k8s/lint/lockcheck.py
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==([^\s;\\]+)")


def normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(lines: list[str]) -> dict[str, str]:
    found = {}
    for line in lines:
        if match := PIN.match(line.strip()):
            found[normal(match[1])] = match[2]
    return found


def main() -> int:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = pins(project["dependencies"])
    wanted |= pins((ROOT / "requirements-image.in").read_text().splitlines())
    locked = pins((ROOT / "requirements-image.lock").read_text().splitlines())
    stale = {name: version for name, version in wanted.items() if locked.get(name) != version}
    for name, version in sorted(stale.items()):
        print(f"requirements-image.lock: {name} is {locked.get(name)}, wanted {version}")
    if stale:
        print("run `make lock` and commit requirements-image.lock")
        return 1
    print(f"requirements-image.lock: {len(wanted)} direct pins match")
    return 0


if __name__ == "__main__":
    sys.exit(main())
