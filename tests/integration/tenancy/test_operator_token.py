"""The operator token: one secret above every tenant, so guessing it is throttled per client address,
compared in constant time, and every wrong guess is logged as a security event."""

from __future__ import annotations

import structlog

from tests.conftest import OPERATOR_TOKEN

BODY = {
    "name": "X",
    "slug": "never-created",
    "admin_email": "a@x.test",
    "admin_password": "Correct-Horse-9-staple",
}


async def _guess(client, token: str):
    return await client.post("/v1/tenants", json=BODY, headers={"Authorization": f"Bearer {token}"})


async def test_guessing_the_operator_token_is_throttled_per_client_address(client, settings) -> None:
    limit = settings.auth.operator_failure_limit
    for i in range(limit):
        r = await _guess(client, f"guess-{i}")
        assert r.status_code == 401, r.text
        assert r.json()["code"] == "invalid_token"
    r = await _guess(client, "one-guess-too-many")
    assert r.status_code == 429, r.text
    assert r.json()["code"] == "rate_limited"
    assert int(r.headers["retry-after"]) > 0
    # Once throttled, even the right token is not evaluated: the attacker learns nothing more.
    r = await _guess(client, OPERATOR_TOKEN)
    assert r.status_code == 429


async def test_right_operator_token_is_not_throttled_by_its_own_use(client, settings) -> None:
    import uuid

    for _ in range(settings.auth.operator_failure_limit + 2):
        body = {**BODY, "slug": f"op-{uuid.uuid4().hex[:12]}"}
        r = await client.post("/v1/tenants", json=body, headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"})
        assert r.status_code == 201, r.text


async def test_wrong_operator_token_is_a_security_log_event(client) -> None:
    with structlog.testing.capture_logs() as logs:
        r = await _guess(client, "not-the-token")
    assert r.status_code == 401
    events = [e for e in logs if e.get("event") == "security.operator_token_rejected"]
    assert events and events[0]["ip"] and "not-the-token" not in str(events)
