"""Locked-down topics: a broker with authorization on (KRaft's StandardAuthorizer, SASL/SCRAM).

A platform team's cluster: an admin (super user) makes the six topics and grants the
service's user exactly READ, WRITE and DESCRIBE on them and READ on its consumer group, and
nothing else (no CREATE, no DESCRIBE_CONFIGS, no cluster rights). With
``KAFKA_CREATE_TOPICS=false``:

- that user runs ``campaign-ledger serve`` (a real process) and every event is stored;
- with one topic missing the process exits non-zero and names it, and never creates it,
  not even when it runs as the admin, who could;
- in create mode the service makes the snapshot topic compacted, with the configured
  replication factor, and a user without CREATE still starts once the topics exist.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from dev.servers.common import free_port, free_ports
from dev.servers.kafka import KafkaAuth, KafkaServer, grant_acls
from service.bootstrap import build
from service.settings import Settings
from tests.chaos.cluster import ConfiguredDeployment, topic_layout
from tests.chaos.processes import REPO_ROOT, TOPIC_SETTINGS, MixedStream, Sender, ServiceProcess
from tests.chaos.test_never_lose import assert_clean, settle, verify
from tests.security.helpers import secret
from tests.servers import start_local

pytestmark = pytest.mark.slow

ADMIN, USER = "admin", "ledger"
MECHANISM = "SCRAM-SHA-256"
# Kafka error codes a refused CreateTopics answers with.
TOPIC_AUTHORIZATION_FAILED, CLUSTER_AUTHORIZATION_FAILED = 29, 31


@dataclass(frozen=True)
class LockedKafka:
    server: KafkaServer
    passwords: dict[str, str]

    @property
    def plain(self) -> str:
        """PLAINTEXT listener (User:ANONYMOUS, a super user): the test's own clients."""
        return self.server.bootstrap_servers

    @property
    def sasl(self) -> str:
        return self.server.listener_address("SASL")

    def service_settings(self, user: str) -> dict[str, str]:
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.sasl,
            "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "KAFKA_SASL_MECHANISM": MECHANISM,
            "KAFKA_SASL_USERNAME": user,
            "KAFKA_SASL_PASSWORD": self.passwords[user],
        }

    def admin(self, user: str = ADMIN) -> AIOKafkaAdminClient:
        return AIOKafkaAdminClient(
            bootstrap_servers=self.sasl,
            security_protocol="SASL_PLAINTEXT",
            sasl_mechanism=MECHANISM,
            sasl_plain_username=user,
            sasl_plain_password=self.passwords[user],
        )

    async def grant(self, principal: str, grants: list[str]) -> list[str]:
        """ACLs through the SASL listener, as the admin (a super user by ``super.users``)."""
        login = "org.apache.kafka.common.security.scram.ScramLoginModule required"
        password = self.passwords[ADMIN]
        properties = {
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": MECHANISM,
            "sasl.jaas.config": f'{login} username="{ADMIN}" password="{password}";',
        }
        return await asyncio.to_thread(
            grant_acls, self.sasl, principal, grants, client_properties=properties
        )


@pytest.fixture(scope="module")
def locked_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LockedKafka]:
    passwords = {ADMIN: secret("adm"), USER: secret("usr")}

    def make() -> KafkaServer:
        port, controller, sasl_port = free_ports(3)
        return KafkaServer(
            tmp_path_factory.mktemp("acl-kafka"),
            port=port,
            controller_port=controller,
            auth=KafkaAuth(sasl_port, passwords, super_users=(ADMIN,), mechanism=MECHANISM),
            heap_max="512m",
            ready_timeout=120,
            die_with_parent=True,
        )

    server = start_local(make)
    try:
        yield LockedKafka(server, passwords)
    finally:
        server.stop()


@pytest.fixture
async def locked_deployment(
    locked_kafka: LockedKafka, mongodb_uri: str
) -> AsyncIterator[ConfiguredDeployment]:
    """Own topic names, group and database; the service runs as USER, creating nothing."""
    deployment = ConfiguredDeployment.with_settings(
        locked_kafka.plain,
        mongodb_uri,
        "acl",
        {**locked_kafka.service_settings(USER), "KAFKA_CREATE_TOPICS": "false"},
    )
    yield deployment
    await deployment.drop()


def least_privilege(deployment: ConfiguredDeployment) -> list[str]:
    """READ, WRITE, DESCRIBE on the six topics and READ on the group: nothing more."""
    grants = [f"TOPIC:{name}:READ,WRITE,DESCRIBE" for name in deployment.topics.values()]
    return [*grants, f"GROUP:{deployment.group_id}:READ"]


async def create_topics(locked: LockedKafka, names: list[str], partitions: int) -> None:
    admin = locked.admin()
    await admin.start()
    try:
        response = await admin.create_topics([NewTopic(name, partitions, 1) for name in names])
        assert all(entry[1] == 0 for entry in response.topic_errors), response
    finally:
        await admin.close()


async def visible_topics(locked: LockedKafka, user: str) -> set[str]:
    admin = locked.admin(user)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


async def wait_visible(locked: LockedKafka, user: str, names: set[str]) -> None:
    """ACLs reach the broker through the metadata log: wait until they are in force."""
    for _ in range(100):
        if names <= await visible_topics(locked, user):
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"{user} still cannot see {names - await visible_topics(locked, user)}")


async def test_read_write_describe_is_enough(
    locked_kafka: LockedKafka, locked_deployment: ConfiguredDeployment, tmp_path: Path
) -> None:
    deployment = locked_deployment
    await create_topics(locked_kafka, list(deployment.topics.values()), deployment.partitions)
    in_force = await locked_kafka.grant(f"User:{USER}", least_privilege(deployment))
    assert len(in_force) >= 6 * 3 + 1
    await wait_visible(locked_kafka, USER, set(deployment.topics.values()))

    # The authorizer is on: this user may not create a topic.
    admin = locked_kafka.admin(USER)
    await admin.start()
    try:
        refused = await admin.create_topics([NewTopic(f"{deployment.topic('lifecycle')}.x", 1, 1)])
    finally:
        await admin.close()
    assert refused.topic_errors[0][1] in (TOPIC_AUTHORIZATION_FAILED, CLUSTER_AUTHORIZATION_FAILED)

    service = ServiceProcess(deployment, tmp_path, "ledger-acl")
    stream = MixedStream(campaigns=4, versions=2, span=4.0)
    sender = Sender(deployment)  # PLAINTEXT listener: the test's producer, not the service
    try:
        await service.start()
        await sender.send_all(stream.events, duration=4.0)
        await settle(deployment, [service])
        found = await verify(deployment, sender.sent, service, strict_order=True)
        log = service.log_tail(400)
    finally:
        await sender.close()
        await service.stop_now()
    print(
        f"\nlocked-down: {len(sender.sent)} events through a user with read/write/describe "
        f"only; lost {found.lost}, duplicated {found.duplicated}, wrong {found.wrong}"
    )
    assert_clean(found, "service run by a read/write/describe user")
    assert "AuthorizationFailed" not in log, log


def serve_once(
    deployment: ConfiguredDeployment, extra: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """``python -m service serve`` until it exits by itself (it must: a topic is missing)."""
    env = {**deployment.environment(free_port()), **extra}
    return subprocess.run(
        [sys.executable, "-m", "service", "serve"],
        cwd=REPO_ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def missing_logged(stderr: str) -> list[Any]:
    """The ``missing`` field of every ``kafka_topics_missing`` JSON log line."""
    found = []
    for line in stderr.splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict) and record.get("event") == "kafka_topics_missing":
                found.append(record.get("missing"))
    return found


async def test_missing_topic_stops_the_service_naming_it(
    locked_kafka: LockedKafka, locked_deployment: ConfiguredDeployment
) -> None:
    deployment = locked_deployment
    absent = deployment.topic("dead_letter")
    present = [name for name in deployment.topics.values() if name != absent]
    await create_topics(locked_kafka, present, deployment.partitions)
    await locked_kafka.grant(f"User:{USER}", least_privilege(deployment))
    await wait_visible(locked_kafka, USER, set(present))

    as_user = await asyncio.to_thread(serve_once, deployment, {})
    # The admin could create it: the service still must not.
    as_admin = await asyncio.to_thread(serve_once, deployment, locked_kafka.service_settings(ADMIN))
    for who, run in (("user", as_user), ("admin", as_admin)):
        output = run.stderr + run.stdout
        assert run.returncode != 0, f"as {who}: exit status 0 with {absent} missing:\n{output}"
        assert missing_logged(run.stderr) == [[absent]], f"as {who}:\n{output[-3000:]}"
        plain = [ln for ln in run.stderr.splitlines() if ln.startswith("campaign-ledger:")]
        assert plain and absent in plain[0], f"as {who}: no plain message on stderr"
        assert not any(name in plain[0] for name in present)
    assert absent not in await visible_topics(locked_kafka, ADMIN), "the service created it"
    print(f"\nmissing topic: exit {as_user.returncode} (user), {as_admin.returncode} (admin)")


async def test_created_snapshot_topic_is_compacted(
    locked_kafka: LockedKafka, locked_deployment: ConfiguredDeployment
) -> None:
    """Create mode as the admin: the six topics as configured, the snapshot one compacted.
    Then, topics in place, the least-privileged user starts with the default (create) mode:
    no CreateTopics request is made for topics that exist."""
    deployment = locked_deployment
    common: dict[str, Any] = {
        **{TOPIC_SETTINGS[kind].lower(): name for kind, name in deployment.topics.items()},
        "mongodb_uri": deployment.mongo_uri,
        "mongodb_database": deployment.database,
        "kafka_group_id": deployment.group_id,
        "kafka_topic_partitions": 2,
        "kafka_topic_replication_factor": 1,  # one node: the three-broker test checks 3
    }

    def settings(user: str, create: bool) -> Settings:
        kafka = {k.lower(): v for k, v in locked_kafka.service_settings(user).items()}
        return Settings(**common, **kafka, kafka_create_topics=create)

    for user in (ADMIN, USER):
        if user == USER:
            await locked_kafka.grant(f"User:{USER}", least_privilege(deployment))
            await wait_visible(locked_kafka, USER, set(deployment.topics.values()))
        service = build(settings(user, create=True))
        try:
            async with service.app.router.lifespan_context(service.app):
                assert service.health.started
        finally:
            await service.store.close()

    admin = locked_kafka.admin()
    await admin.start()
    try:
        layout = await topic_layout(admin, deployment.topics.values())
    finally:
        await admin.close()
    snapshot = layout[deployment.topic("snapshot")]
    dead_letter = layout[deployment.topic("dead_letter")]
    assert snapshot.configs["cleanup.policy"] == "compact"
    assert dead_letter.configs["cleanup.policy"] == "delete", "dead letters must not be compacted"
    for name, found in layout.items():
        assert (found.partitions, found.replication_factors) == (2, {1}), (name, found)
