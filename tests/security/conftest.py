"""Servers with security switched on, for tests/security (all session-scoped).

* ``pki``: a throwaway CA and a server certificate for 127.0.0.1/localhost (openssl CLI).
* ``secure_kafka``: one local Kafka broker (KRaft) with three client listeners:
  PLAINTEXT (used by the test harness' own producer and readers, and between brokers),
  SASL_PLAINTEXT with SCRAM-SHA-256 and SCRAM-SHA-512 users created at format time and a
  PLAIN user, and SSL (PEM key store, certificate signed by the ``pki`` CA).
* ``auth_mongo``: SecantusDB with ``--auth``: a root user is provisioned while auth is
  off (SecantusDB has no localhost exception), then the server is restarted with
  ``--auth``; each test makes its own least-privilege user (``dbOwner`` of its database).

MongoDB without auth comes from the suite's ``mongodb_uri`` (tests/servers.py).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest
from pymongo import MongoClient

from dev.servers.common import free_ports
from dev.servers.kafka import KafkaListener, KafkaServer
from dev.servers.mongo import MongoServer
from tests.security.helpers import SASL_USERS, AuthMongo, Pki, SecureKafka, make_pki, secret
from tests.servers import start_local

SCRAM_LOGIN = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
PLAIN_LOGIN = "org.apache.kafka.common.security.plain.PlainLoginModule required"


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not on PATH: cannot make a throwaway CA")
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def secure_kafka(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[SecureKafka]:
    passwords = {mechanism: secret("kpw") for mechanism in SASL_USERS}
    format_args: list[str] = []
    for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512"):
        user, password = SASL_USERS[mechanism], passwords[mechanism]
        format_args += ["--add-scram", f"{mechanism}=[name={user},password={password}]"]
    plain_user = f'user_{SASL_USERS["PLAIN"]}="{passwords["PLAIN"]}"'
    properties: dict[str, str | int | bool] = {
        "sasl.enabled.mechanisms": ",".join(SASL_USERS),
        "listener.name.sasl.sasl.enabled.mechanisms": ",".join(SASL_USERS),
        "listener.name.sasl.scram-sha-256.sasl.jaas.config": SCRAM_LOGIN,
        "listener.name.sasl.scram-sha-512.sasl.jaas.config": SCRAM_LOGIN,
        "listener.name.sasl.plain.sasl.jaas.config": f"{PLAIN_LOGIN} {plain_user};",
        "listener.name.ssl.ssl.keystore.type": "PEM",
        "listener.name.ssl.ssl.keystore.certificate.chain": pki.cert_pem,
        "listener.name.ssl.ssl.keystore.key": pki.key_pem,
        "listener.name.ssl.ssl.client.auth": "none",
    }

    def make() -> KafkaServer:
        port, controller, sasl_port, ssl_port = free_ports(4)
        return KafkaServer(
            tmp_path_factory.mktemp("secure-kafka"),
            port=port,
            controller_port=controller,
            extra_listeners=[
                KafkaListener("SASL", sasl_port, "SASL_PLAINTEXT"),
                KafkaListener("SSL", ssl_port, "SSL"),
            ],
            server_properties=properties,
            format_args=format_args,
            heap_max="512m",
            ready_timeout=120,
            die_with_parent=True,
        )

    server = start_local(make)
    try:
        yield SecureKafka(server, passwords, pki.ca_file)
    finally:
        server.stop()


@pytest.fixture(scope="session")
def auth_mongo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthMongo]:
    root_password = secret("root")
    (port,) = free_ports(1)
    server = MongoServer(
        tmp_path_factory.mktemp("auth-mongo"), port=port, sync_on_commit=False, die_with_parent=True
    )
    server.start()
    try:
        # No localhost exception in SecantusDB: users are made with auth off, then --auth.
        client: MongoClient[dict[str, Any]]
        with MongoClient(server.uri) as client:
            client.admin.command("createUser", "root", pwd=root_password, roles=["root"])
        server.stop()
        server.extra_args = ("--auth",)
        server.start()
        yield AuthMongo(server, root_password)
    finally:
        server.stop()
