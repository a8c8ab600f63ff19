"""Batches compressed by a non-Python producer (kcat, i.e. librdkafka) with each codec.

The contract says producers may use gzip, snappy, lz4 or zstd and all four must be read.
kcat sends one event per codec; the broker keeps the producer's codec (topic
compression.type=producer), which the test checks in the partition's log segments, so
each codec really reached the service's consumer.
"""

from __future__ import annotations

import asyncio
import shutil
import struct
import subprocess
from pathlib import Path

import orjson
import pytest

from tests.integration.harness import isolated_settings, new_id, running_ledger
from tests.security.helpers import SecureKafka, generated

CODECS = ("gzip", "snappy", "lz4", "zstd")
CODEC_OF_ATTRIBUTE = {0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}
KCAT = shutil.which("kcat") or shutil.which("kafkacat")

pytestmark = pytest.mark.skipif(
    KCAT is None,
    reason="kcat (librdkafka's CLI) is not on PATH: `apt-get install kcat` (.ci/run does)",
)


def batch_codecs(log_dirs: Path, topic: str) -> list[str]:
    """The compression codec of every record batch of ``topic``, in offset order per partition.

    Record batch v2 layout: baseOffset int64, batchLength int32, partitionLeaderEpoch int32,
    magic int8, crc uint32, attributes int16 (its low 3 bits: the codec), ...
    """
    codecs: list[str] = []
    for partition_dir in sorted(log_dirs.glob(f"{topic}-*")):
        for segment in sorted(partition_dir.glob("*.log")):
            data = segment.read_bytes()
            position = 0
            while position + 23 <= len(data):
                (length,) = struct.unpack_from(">i", data, position + 8)
                magic = data[position + 16]
                (attributes,) = struct.unpack_from(">h", data, position + 21)
                if length <= 0 or magic != 2:
                    break
                codecs.append(CODEC_OF_ATTRIBUTE[attributes & 0x07])
                position += 12 + length
    return codecs


def kcat_produce(bootstrap: str, topic: str, key: str, value: bytes, codec: str) -> None:
    assert KCAT is not None
    command = [
        KCAT, "-P", "-b", bootstrap, "-t", topic, "-k", key, "-z", codec,
        "-H", "content-type=application/cloudevents+json",
        "-X", "acks=all",
    ]  # fmt: skip
    result = subprocess.run(
        command, input=value + b"\n", capture_output=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")


async def test_each_codec_from_librdkafka_becomes_a_version(
    secure_kafka: SecureKafka, mongodb_uri: str
) -> None:
    async with running_ledger(isolated_settings(secure_kafka.plain, mongodb_uri)) as ledger:
        campaign, artifact = new_id("c"), new_id("a")
        topic = ledger.topic("artifact")
        for n, codec in enumerate(CODECS, start=1):
            event = generated(campaign, artifact, n, version_id=f"{artifact}.{codec}")
            await asyncio.to_thread(
                kcat_produce, secure_kafka.plain, topic, campaign, orjson.dumps(event), codec
            )
        await ledger.wait_revision(campaign, len(CODECS))
        assert [s["revision"] for s in await ledger.snapshots(campaign)] == [1, 2, 3, 4]
        stored = [
            (doc["_id"], doc["version_number"])
            async for doc in ledger.db.versions.find(
                {"artifact_id": artifact}, sort=[("version_number", 1)]
            )
        ]
        assert stored == [(f"{artifact}.{codec}", n) for n, codec in enumerate(CODECS, 1)]
        assert batch_codecs(secure_kafka.log_dirs, topic) == list(CODECS)
        assert await ledger.dead_letters() == []
