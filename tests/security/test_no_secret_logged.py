"""`python -m service serve` at LOG_LEVEL=DEBUG never writes a secret to its output.

Every secret is real and in use: the Kafka password authenticates over SASL PLAIN (the one
mechanism that sends the password itself, so a DEBUG dump of the SASL exchange would show
it), the MongoDB password authenticates against SecantusDB --auth, and the API tokens guard
the HTTP routes. The process is driven with events (valid and invalid) and HTTP requests
(right, wrong and missing tokens), then stopped with SIGTERM; all of stdout and stderr is
searched. The same holds when the servers refuse the credentials and start-up fails.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from dev.servers.common import REPO_ROOT, free_port
from tests.integration.harness import TOPIC_KINDS, eventually, new_id
from tests.security.helpers import SASL_USERS, AuthMongo, SecureKafka, generated, secret

OWN_SETTINGS = ("KAFKA_", "MONGODB_", "API_TOKENS", "TOPIC_", "HTTP_", "LOG_")


@dataclass
class Serve:
    """`python -m service serve` with every secret set, its output in files."""

    kafka: SecureKafka
    mongo: AuthMongo
    workdir: Path
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    tokens: list[str] = field(default_factory=lambda: [secret("tokA"), secret("tokB")])
    port: int = field(default_factory=free_port)

    def __post_init__(self) -> None:
        self.database = f"ledger_secrets_{self.tag}"
        self.mongo_user, self.mongo_password = self.mongo.create_user(self.database)
        self.kafka_password = self.kafka.passwords["PLAIN"]
        self.topics = {kind: f"t-{self.tag}.{kind}" for kind in TOPIC_KINDS}
        self.output = self.workdir / "serve.out"
        self.errors = self.workdir / "serve.err"

    def env(self, *, kafka_password: str, mongo_password: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(OWN_SETTINGS)}
        env |= {
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka.sasl,
            "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "KAFKA_SASL_MECHANISM": "PLAIN",
            "KAFKA_SASL_USERNAME": SASL_USERS["PLAIN"],
            "KAFKA_SASL_PASSWORD": kafka_password,
            "KAFKA_GROUP_ID": f"ledger-secrets-{self.tag}",
            "KAFKA_TOPIC_PARTITIONS": "3",
            "MONGODB_URI": self.mongo.uri(self.mongo_user, mongo_password),
            "MONGODB_DATABASE": self.database,
            "API_TOKENS": ",".join(self.tokens),
            "HTTP_HOST": "127.0.0.1",
            "HTTP_PORT": str(self.port),
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "DEBUG",
            "MAINTENANCE_INTERVAL_SECONDS": "0.5",
        }
        for kind, attribute in TOPIC_KINDS.items():
            env[attribute.upper()] = self.topics[kind]
        return env

    async def start(self, env: dict[str, str]) -> asyncio.subprocess.Process:
        with self.output.open("wb") as out, self.errors.open("wb") as err:
            return await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "service",
                "serve",
                cwd=REPO_ROOT,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )

    def said(self) -> str:
        return self.output.read_text(errors="replace") + self.errors.read_text(errors="replace")

    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{self.port}", timeout=10, trust_env=False
        )


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.kill()
        await process.wait()


async def test_serve_at_debug_level_logs_no_secret(
    secure_kafka: SecureKafka, auth_mongo: AuthMongo, tmp_path: Path
) -> None:
    serve = Serve(secure_kafka, auth_mongo, tmp_path)
    wrong_token = secret("wrongtok")  # what a client mistyped may be another system's token
    process = await serve.start(
        serve.env(kafka_password=serve.kafka_password, mongo_password=serve.mongo_password)
    )
    try:
        async with serve.http() as http:
            await _drive(http, serve, wrong_token)
        process.send_signal(signal.SIGTERM)
        returncode = await asyncio.wait_for(process.wait(), 60)
    finally:
        await _stop(process)
        auth_mongo.drop(serve.database)
    said = serve.said()
    # uvicorn re-raises the SIGTERM it handled once shut down, so -SIGTERM is a clean stop too.
    assert returncode == 0, said[-4000:]  # a clean stop exits 0
    # The capture works and holds DEBUG records, e.g. each committed batch.
    assert '"event": "service_started"' in said
    assert '"event": "service_stopped"' in said
    assert '"level": "debug"' in said
    for name, value in {
        "KAFKA_SASL_PASSWORD": serve.kafka_password,
        "password in MONGODB_URI": serve.mongo_password,
        "first API token": serve.tokens[0],
        "second API token": serve.tokens[1],
        "token sent by a client": wrong_token,
    }.items():
        assert value not in said, f"{name} appears in the service's output"


@pytest.mark.parametrize("refused_by", ["kafka", "mongodb"])
async def test_refused_credentials_fail_start_up_without_being_logged(
    secure_kafka: SecureKafka, auth_mongo: AuthMongo, tmp_path: Path, refused_by: str
) -> None:
    serve = Serve(secure_kafka, auth_mongo, tmp_path)
    wrong = secret("wrongpw")
    kafka_password = wrong if refused_by == "kafka" else serve.kafka_password
    mongo_password = wrong if refused_by == "mongodb" else serve.mongo_password
    process = await serve.start(
        serve.env(kafka_password=kafka_password, mongo_password=mongo_password)
    )
    try:
        returncode = await asyncio.wait_for(process.wait(), 90)
    finally:
        await _stop(process)
        auth_mongo.drop(serve.database)
    said = serve.said()
    assert returncode != 0, said[-4000:]
    reason = {"kafka": "SaslAuthenticationFailed", "mongodb": "AuthenticationFailed"}[refused_by]
    assert reason in said, said[-4000:]  # the operator is told why
    assert '"level": "debug"' in said
    for value in (wrong, serve.kafka_password, serve.mongo_password, *serve.tokens):
        assert value not in said


async def _drive(http: httpx.AsyncClient, serve: Serve, wrong_token: str) -> None:
    async def ready() -> bool:
        try:
            return (await http.get("/readyz")).status_code == 200
        except httpx.TransportError:
            return False

    await eventually(ready, timeout=90, interval=0.3)
    campaign, artifact = new_id("c"), new_id("a")
    producer = AIOKafkaProducer(bootstrap_servers=serve.kafka.plain, acks="all")
    await producer.start()
    try:
        key, topic = campaign.encode(), serve.topics["artifact"]
        await producer.send_and_wait(topic, b"{not json", key=key)
        await producer.send_and_wait(
            topic, orjson.dumps({"specversion": "1.0", "id": "x"}), key=key
        )
        for n in (1, 2):
            await producer.send_and_wait(
                topic, orjson.dumps(generated(campaign, artifact, n)), key=key
            )
    finally:
        await producer.stop()

    bearer = [{"Authorization": f"Bearer {token}"} for token in serve.tokens]
    snapshot = f"/campaigns/{campaign}/snapshot"

    async def revision_two() -> bool:
        answer = await http.get(snapshot, headers=bearer[0])
        return answer.status_code == 200 and answer.json()["revision"] == 2

    await eventually(revision_two, timeout=60, interval=0.2)
    for headers in bearer:
        assert (await http.get(snapshot, headers=headers)).status_code == 200
    for refused in (
        {},
        {"Authorization": f"Bearer {wrong_token}"},
        {"Authorization": f"Basic {serve.tokens[0]}"},
        {"Authorization": wrong_token},
    ):
        assert (await http.get(snapshot, headers=refused)).status_code == 401
    for path in (
        f"/campaigns/{campaign}/artifacts/{artifact}/versions",
        f"/campaigns/{campaign}/export",
        "/campaigns/unknown-campaign/snapshot",
        "/openapi.json",
        "/asyncapi.json",
    ):
        answer = await http.get(path, headers=bearer[1])
        assert answer.status_code in {200, 404}, (path, answer.status_code)
        for value in (*serve.tokens, wrong_token, serve.kafka_password, serve.mongo_password):
            assert value not in answer.text, f"a secret is in the body of {path}"
    for open_path in ("/healthz", "/readyz", "/metrics"):
        assert (await http.get(open_path)).status_code == 200
