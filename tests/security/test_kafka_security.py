"""Kafka with authentication and encryption: SASL/SCRAM and TLS listeners of a real broker."""

from __future__ import annotations

import logging

import pytest

from tests.integration.harness import Ledger, isolated_settings, new_id
from tests.security.helpers import (
    SASL_USERS,
    SecureKafka,
    everything_said,
    generated,
    secret,
    secured_ledger,
    startup_failure,
)


async def _one_event_reaches_a_snapshot(ledger: Ledger) -> None:
    campaign, artifact = new_id("c"), new_id("a")
    await ledger.send(generated(campaign, artifact, 1))
    published = await ledger.wait_revision(campaign, 1)
    assert published["artifacts"][0]["artifact_id"] == artifact
    assert published["artifacts"][0]["version_count"] == 1
    response = await ledger.snapshot(campaign)
    assert response.status_code == 200
    assert response.json()["revision"] == 1
    ready = await ledger.http.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"consuming": True, "mongodb": True, "kafka": True}


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
async def test_sasl_scram_consumes_and_publishes(
    secure_kafka: SecureKafka, mongodb_uri: str, mechanism: str
) -> None:
    settings = isolated_settings(
        secure_kafka.sasl,
        mongodb_uri,
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism=mechanism,
        kafka_sasl_username=SASL_USERS[mechanism],
        kafka_sasl_password=secure_kafka.passwords[mechanism],
    )
    async with secured_ledger(settings, secure_kafka.plain) as ledger:
        await _one_event_reaches_a_snapshot(ledger)


async def test_wrong_sasl_password_stops_start_up_and_is_not_logged(
    secure_kafka: SecureKafka, mongodb_uri: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    mechanism = "SCRAM-SHA-256"
    wrong = secret("wrongpw")
    settings = isolated_settings(
        secure_kafka.sasl,
        mongodb_uri,
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism=mechanism,
        kafka_sasl_username=SASL_USERS[mechanism],
        kafka_sasl_password=wrong,
    )
    error = await startup_failure(settings)
    said = everything_said(error, caplog)
    assert "SaslAuthenticationFailed" in said  # the reason is there for the operator
    assert wrong not in said
    assert secure_kafka.passwords[mechanism] not in said
    assert wrong not in repr(settings) and wrong not in str(settings.model_dump())


async def test_tls_listener_with_the_ca_file(secure_kafka: SecureKafka, mongodb_uri: str) -> None:
    settings = isolated_settings(
        secure_kafka.ssl,
        mongodb_uri,
        kafka_security_protocol="SSL",
        kafka_ssl_cafile=str(secure_kafka.ca_file),
    )
    async with secured_ledger(settings, secure_kafka.plain) as ledger:
        await _one_event_reaches_a_snapshot(ledger)


async def test_tls_listener_rejects_an_untrusted_certificate(
    secure_kafka: SecureKafka, mongodb_uri: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Without KAFKA_SSL_CAFILE the system trust store applies: the test CA is not in it."""
    caplog.set_level(logging.DEBUG)
    settings = isolated_settings(secure_kafka.ssl, mongodb_uri, kafka_security_protocol="SSL")
    error = await startup_failure(settings)
    assert "CERTIFICATE_VERIFY_FAILED" in everything_said(error, caplog)
