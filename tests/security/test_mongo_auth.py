"""MongoDB with authentication: SecantusDB started with --auth, SCRAM-SHA-256 users.

The service's user owns its database only (dbOwner), so these tests also show that the
service needs nothing outside it (its readiness `ping` on `admin` needs no privilege).
"""

from __future__ import annotations

import logging

import httpx
import pytest
from pymongo import AsyncMongoClient
from pymongo.errors import OperationFailure

from service.bootstrap import build
from tests.integration.harness import isolated_settings, new_id, running_ledger
from tests.security.helpers import (
    AuthMongo,
    SecureKafka,
    everything_said,
    generated,
    secret,
    startup_failure,
)


async def test_service_runs_as_a_user_that_owns_only_its_database(
    secure_kafka: SecureKafka, auth_mongo: AuthMongo
) -> None:
    database = f"ledger_auth_{new_id('db').removeprefix('db-')}"
    user, password = auth_mongo.create_user(database)
    uri = auth_mongo.uri(user, password)
    settings = isolated_settings(secure_kafka.plain, uri, mongodb_database=database)
    async with running_ledger(settings) as ledger:
        campaign, artifact = new_id("c"), new_id("a")
        await ledger.send(generated(campaign, artifact, 1))
        await ledger.send(generated(campaign, artifact, 2))
        await ledger.wait_revision(campaign, 2)
        assert (await ledger.snapshot(campaign)).json()["revision"] == 2
        assert await ledger.count("versions", {"campaign_id": campaign}) == 2
        ready = await ledger.http.get("/readyz")
        assert ready.status_code == 200, ready.text

        # The server really enforces authentication and the user's scope.
        anonymous: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(auth_mongo.anonymous_uri)
        try:
            with pytest.raises(OperationFailure) as refused:
                await anonymous[database].versions.find_one({})
            assert refused.value.code == 13  # Unauthorized
        finally:
            await anonymous.close()
        with pytest.raises(OperationFailure) as elsewhere:
            await ledger.service.store.client["not_its_db"].probe.insert_one({})
        assert elsewhere.value.code == 13


async def test_wrong_mongo_password_fails_readiness_and_start_up(
    secure_kafka: SecureKafka, auth_mongo: AuthMongo, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    database = f"ledger_auth_{new_id('db').removeprefix('db-')}"
    user, password = auth_mongo.create_user(database)
    wrong = secret("wrongmpw")
    settings = isolated_settings(
        secure_kafka.plain, auth_mongo.uri(user, wrong), mongodb_database=database
    )

    # Readiness as /readyz computes it, with consuming assumed started: MongoDB says no.
    service = build(settings)
    service.health.started = True
    try:
        transport = httpx.ASGITransport(app=service.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ledger") as client:
            ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["mongodb"] is False
    finally:
        await service.store.close()

    # Start-up: refused by the server's authentication, the reason said, no password shown.
    error = await startup_failure(settings)
    said = everything_said(error, caplog)
    assert isinstance(error, OperationFailure), repr(error)
    assert error.code == 18  # AuthenticationFailed
    assert wrong not in said
    assert password not in said
    assert auth_mongo.root_password not in said
