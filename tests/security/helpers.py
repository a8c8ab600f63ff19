"""What the security tests share: secrets, events, handles on the secured servers, and
``secured_ledger``, ``running_ledger`` for a service whose Kafka settings need credentials
that the harness' own aiokafka clients do not have."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import subprocess
import traceback
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient
from pymongo.errors import PyMongoError

from dev.servers.kafka import KafkaServer
from dev.servers.mongo import MongoServer
from service.bootstrap import build
from service.settings import Settings
from tests import events
from tests.integration.harness import running_ledger

# SASL user of each mechanism the SASL listener enables (SCRAM ones are created at format
# time; PLAIN's is declared in the listener's JAAS config).
SASL_USERS = {"SCRAM-SHA-256": "ledger256", "SCRAM-SHA-512": "ledger512", "PLAIN": "ledgerplain"}


def secret(prefix: str) -> str:
    """A recognisable random secret (alphanumeric, so identical once URL-quoted)."""
    return f"{prefix}{secrets.token_hex(12)}"


def generated(campaign: str, artifact: str, n: int, **extra: Any) -> dict[str, Any]:
    """A valid `campaign.artifact.generated` event (version n of the artifact)."""
    return events.generated(
        campaign, artifact, content={"headline": f"Spring is here, take {n}"}, **extra
    )


@dataclass(frozen=True)
class Pki:
    ca_file: Path
    cert_file: Path
    key_file: Path

    @property
    def cert_pem(self) -> str:
        return self.cert_file.read_text()

    @property
    def key_pem(self) -> str:
        return self.key_file.read_text()


def _openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(
        ["openssl", *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=60
    )
    if result.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {result.stderr.strip()}")


def make_pki(where: Path) -> Pki:
    """A CA and a server certificate for 127.0.0.1 and localhost, made with the openssl CLI."""
    new_key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-noenc"]
    ca = ["-x509", *new_key, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2"]
    ca += ["-subj", "/CN=campaign-ledger test CA"]
    ca += ["-addext", "basicConstraints=critical,CA:TRUE"]
    ca += ["-addext", "keyUsage=critical,keyCertSign,cRLSign"]
    _openssl("req", *ca, cwd=where)
    request = [*new_key, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"]
    _openssl("req", *request, cwd=where)
    (where / "server.ext").write_text(
        "basicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid\n"
    )
    sign = ["-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial"]
    sign += ["-out", "server.pem", "-days", "2", "-extfile", "server.ext"]
    _openssl("x509", *sign, cwd=where)
    return Pki(where / "ca.pem", where / "server.pem", where / "server.key")


@dataclass(frozen=True)
class SecureKafka:
    server: KafkaServer
    passwords: dict[str, str]  # SASL mechanism -> password of SASL_USERS[mechanism]
    ca_file: Path

    @property
    def plain(self) -> str:
        return self.server.bootstrap_servers

    @property
    def sasl(self) -> str:
        return self.server.listener_address("SASL")

    @property
    def ssl(self) -> str:
        return self.server.listener_address("SSL")

    @property
    def log_dirs(self) -> Path:
        return self.server.log_dirs


@dataclass(frozen=True)
class AuthMongo:
    server: MongoServer
    root_password: str

    def uri(self, user: str, password: str) -> str:
        return (
            f"mongodb://{user}:{password}@{self.server.host}:{self.server.port}/"
            "?directConnection=true&authSource=admin"
        )

    @property
    def anonymous_uri(self) -> str:
        return self.server.uri

    def create_user(self, database: str) -> tuple[str, str]:
        """A user owning only ``database`` (dbOwner: read, write, indexes, drop)."""
        user, password = f"svc-{uuid.uuid4().hex[:8]}", secret("mpw")
        client: MongoClient[dict[str, Any]]
        with MongoClient(self.uri("root", self.root_password)) as client:
            client.admin.command(
                "createUser", user, pwd=password, roles=[{"role": "dbOwner", "db": database}]
            )
        return user, password

    def drop(self, database: str) -> None:
        client: MongoClient[dict[str, Any]]
        with MongoClient(self.uri("root", self.root_password)) as client:
            client.drop_database(database)


def secured_ledger(settings: Settings, client_bootstrap: str) -> Any:
    """``running_ledger``, but the test's producer and readers use ``client_bootstrap``.

    The service itself connects with ``settings`` (SASL, SSL...); the harness' aiokafka
    clients have no credentials, so they use the broker's PLAINTEXT listener.
    """
    return running_ledger(settings, client_bootstrap=client_bootstrap)


async def startup_failure(settings: Settings, budget: float = 90) -> BaseException:
    """Run the service's start-up; return what it failed with (fails the test if it starts)."""
    service = build(settings)
    try:
        async with asyncio.timeout(budget):
            async with service.app.router.lifespan_context(service.app):
                pytest.fail("the service started")
    except Exception as error:
        return error
    finally:
        await service.broker.stop()
        with contextlib.suppress(PyMongoError):  # wrong credentials cannot drop anything
            await service.store.client.drop_database(settings.mongodb_database)
        await service.store.close()
    raise AssertionError("unreachable")


def everything_said(error: BaseException, caplog: pytest.LogCaptureFixture) -> str:
    """The captured log records plus the start-up error's whole traceback, as text."""
    return caplog.text + "".join(traceback.format_exception(error))
