"""API_TOKENS: every route but /healthz, /readyz and /metrics needs `Bearer <a token>`."""

from __future__ import annotations

import hmac

import pytest
from fastapi import HTTPException
from starlette.requests import Request

from service.api import http as http_api
from tests.integration.harness import isolated_settings, new_id, running_ledger
from tests.security.helpers import SecureKafka, generated, secret


async def test_guarded_routes_need_one_of_the_configured_tokens(
    secure_kafka: SecureKafka, mongodb_uri: str
) -> None:
    first, second, wrong = secret("tokA"), secret("tokB"), secret("wrongtok")
    # As an operator may write it: spaces around entries, a trailing comma.
    settings = isolated_settings(
        secure_kafka.plain, mongodb_uri, api_tokens=f" {first} , {second} ,"
    )
    async with running_ledger(settings) as ledger:
        campaign, artifact = new_id("c"), new_id("a")
        version = f"{artifact}.v1"
        await ledger.send(generated(campaign, artifact, 1, version_id=version))
        await ledger.wait_revision(campaign, 1)
        guarded = [
            f"/campaigns/{campaign}/snapshot",
            f"/campaigns/{campaign}/artifacts/{artifact}/versions",
            f"/versions/{version}/audits",
            f"/campaigns/{campaign}/versions/{version}",
            f"/campaigns/{campaign}/versions/{version}/diff?against={version}",
            "/analytics/iterations",
            f"/campaigns/{campaign}/iterations",
            f"/campaigns/{campaign}/metrics",
            f"/campaigns/{campaign}/export",
            "/campaigns",
            "/openapi.json",
            "/asyncapi.json",
        ]
        refused = [
            None,
            f"Bearer {wrong}",
            f"Basic {first}",  # right token, wrong scheme
            first,  # no scheme at all
            "Bearer",
            "Bearer ",
            f"Bearer {first}x",  # a token is not a prefix match ...
            f"Bearer {first[:-1]}",  # ... either way
            f"Bearer {first},{second}",
            f"Bearer {first} {second}",
            "Bearer ,",
        ]
        for path in guarded:
            for header in refused:
                headers = {} if header is None else {"Authorization": header}
                answer = await ledger.http.get(path, headers=headers)
                assert answer.status_code == 401, (path, header, answer.status_code)
                assert answer.headers["www-authenticate"] == "Bearer"
            for token in (first, second):
                for scheme in ("Bearer", "bearer"):  # auth schemes are case-insensitive
                    answer = await ledger.http.get(
                        path, headers={"Authorization": f"{scheme} {token}"}
                    )
                    assert answer.status_code == 200, (path, scheme, answer.text[:200])
        for open_path in ("/healthz", "/readyz", "/metrics"):
            answer = await ledger.http.get(open_path)
            assert answer.status_code == 200, (open_path, answer.text[:200])


def _request(authorization: str | None) -> Request:
    headers = [] if authorization is None else [(b"authorization", authorization.encode())]
    return Request({"type": "http", "method": "GET", "path": "/", "headers": headers})


def test_every_token_goes_through_compare_digest_whatever_the_outcome(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Constant work per request: all tokens compared, with hmac.compare_digest, always."""
    tokens = ("token-one", "token-two", "token-three")
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr("service.api.http.hmac.compare_digest", counting)
    guard = http_api.bearer_guard(tokens)
    cases = {
        "first token": ("Bearer token-one", True),
        "last token": ("Bearer token-three", True),
        "wrong token": ("Bearer token-four", False),
        "no header": (None, False),
        "other scheme": ("Basic token-one", False),
    }
    for label, (header, accepted) in cases.items():
        compared.clear()
        try:
            guard(_request(header))
            outcome = True
        except HTTPException as refusal:
            assert refusal.status_code == 401
            outcome = False
        assert outcome is accepted, label
        assert sorted(b for _, b in compared) == sorted(t.encode() for t in tokens), label
