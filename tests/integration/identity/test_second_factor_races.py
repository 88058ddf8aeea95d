"""A second factor is good once, also when the logins that present it arrive together.

The logins run concurrently through the app on real PostgreSQL connections; the once-only rule must hold in
the database (a compare-and-set), not in what each request read before the others committed.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import msgspec
import pyotp
import pytest

from gateway.settings import Settings
from tests.factories import PASSWORD, create_tenant, create_user

CONCURRENT = 6
ROUNDS = 3


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # Throttling and lockout are not what is tested here: let every racing login reach the second factor.
    auth = msgspec.structs.replace(
        settings.auth, login_ip_limit=1000, login_account_limit=1000, lockout_threshold=1000
    )
    return msgspec.structs.replace(settings, auth=auth)


@pytest.fixture
def client(racing_client: httpx.AsyncClient) -> httpx.AsyncClient:
    return racing_client


async def _enrolled_user(client) -> tuple[str, str, str, list[str]]:  # type: ignore[no-untyped-def]
    t = await create_tenant(client)
    user, s = await create_user(client, t, "user")
    secret = (await client.post("/v1/auth/mfa/totp", headers=s.headers)).json()["secret"]
    ok = await client.post(
        "/v1/auth/mfa/totp/confirm", json={"code": pyotp.TOTP(secret).now()}, headers=s.headers
    )
    assert ok.status_code == 200, ok.text
    return t.slug, user["email"], secret, ok.json()["recovery_codes"]


async def _race(client, slug: str, email: str, code: str) -> list[int]:  # type: ignore[no-untyped-def]
    body = {"tenant": slug, "email": email, "password": PASSWORD, "totp": code}
    answers = await asyncio.gather(*(client.post("/v1/auth/login", json=body) for _ in range(CONCURRENT)))
    for r in answers:
        assert r.status_code == 200 or r.json()["code"] == "invalid_totp", r.text
    return [r.status_code for r in answers]


async def test_one_totp_code_sent_by_concurrent_logins_signs_in_once(client) -> None:
    for _ in range(ROUNDS):
        slug, email, secret, _codes = await _enrolled_user(client)
        # The next step's code: the one that confirmed enrollment is already spent.
        code = pyotp.TOTP(secret).at(time.time() + 30)
        statuses = await _race(client, slug, email, code)
        assert statuses.count(200) == 1, statuses


async def test_one_recovery_code_sent_by_concurrent_logins_signs_in_once(client) -> None:
    for _ in range(ROUNDS):
        slug, email, _secret, codes = await _enrolled_user(client)
        statuses = await _race(client, slug, email, codes[0])
        assert statuses.count(200) == 1, statuses
