"""The JDK that runs Kafka, and jar sets resolved from a pom with Maven (Kafka's by default).

Kafka comes from Maven Central (``dev/kafka/pom.xml``) and runs as ``java kafka.Kafka``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from dev.servers.common import CACHE_DIR, REPO_ROOT, StackError, file_lock

KAFKA_POM = REPO_ROOT / "dev" / "kafka" / "pom.xml"
KAFKA_LIB_DIR = CACHE_DIR / "kafka" / "lib"

_RESOLVED_MARKER = ".resolved"


def find_java() -> str:
    """``$JAVA_HOME/bin/java`` if set, else ``java`` on PATH."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = Path(java_home) / "bin" / "java"
        if os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("java")
    if found is None:
        raise StackError("java not found: install a JDK/JRE 17+ or set JAVA_HOME")
    return found


def find_maven() -> str:
    found = shutil.which("mvn")
    if found is None:
        raise StackError("mvn not found: Maven 3.8+ is needed once to fetch the Kafka jars")
    return found


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def kafka_jars_ready(lib_dir: Path = KAFKA_LIB_DIR, pom: Path = KAFKA_POM) -> bool:
    marker = lib_dir / _RESOLVED_MARKER
    try:
        return marker.read_text().strip() == _file_digest(pom)
    except FileNotFoundError:
        return False


def ensure_kafka_jars(
    lib_dir: Path = KAFKA_LIB_DIR,
    pom: Path = KAFKA_POM,
    *,
    force: bool = False,
    expect: str = "kafka_*.jar",
) -> Path:
    """Copy Kafka's runtime jars into ``lib_dir`` with Maven unless they are already there.

    Works for any pom's runtime set (e.g. the CloudEvents Java SDK's): ``expect`` is a glob
    that must match a resolved jar, or the resolve counts as failed.

    A marker file holds the sha256 of pom.xml, so editing the pom (e.g. a Kafka upgrade)
    re-resolves. The new set is built in a sibling directory and swapped in, so a failed or
    interrupted resolve never leaves a half-filled classpath, nor two Kafka versions on it.
    """
    if not force and kafka_jars_ready(lib_dir, pom):
        return lib_dir
    with file_lock(lib_dir.parent / ".resolve.lock"):
        if not force and kafka_jars_ready(lib_dir, pom):
            return lib_dir  # another process resolved them while we waited for the lock
        digest = _file_digest(pom)
        staging = lib_dir.parent / f".{lib_dir.name}.staging-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        cmd = [
            find_maven(),
            "-q",
            "-B",
            "-f",
            str(pom),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={staging}",
            "-DincludeScope=runtime",
        ]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0 or not any(staging.glob(expect)):
            shutil.rmtree(staging, ignore_errors=True)
            output = (result.stdout + result.stderr).strip()[-4000:]
            raise StackError(
                f"resolving Kafka jars failed (exit {result.returncode}): {' '.join(cmd)}\n{output}"
            )
        (staging / _RESOLVED_MARKER).write_text(digest + "\n")
        shutil.rmtree(lib_dir, ignore_errors=True)
        staging.rename(lib_dir)
    return lib_dir


def run_java(command: list[str], what: str) -> str:
    """Run one of Kafka's Java tools to completion; its stdout, or StackError with its output."""
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        raise StackError(
            f"{what} failed (exit {result.returncode}):\n"
            f"{(result.stdout + result.stderr).strip()[-4000:]}"
        )
    return result.stdout
