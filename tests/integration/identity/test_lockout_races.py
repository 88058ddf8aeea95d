"""Racing failed logins against one account: the lockout's count and lock are one row updated by one
statement per failure, so concurrent wrong passwords lock the account exactly once and none goes uncounted."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import msgspec
import pytest

from gateway.settings import Settings
from tests.factories import PASSWORD, create_tenant

WRONG = "not the password at all"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # The per-minute throttles are not what is tested here: every racing attempt must reach the lockout.
    auth = msgspec.structs.replace(settings.auth, login_ip_limit=1000, login_account_limit=1000)
    return msgspec.structs.replace(settings, auth=auth)


async def _login(client, slug: str, email: str, password: str):
    return await client.post("/v1/auth/login", json={"tenant": slug, "email": email, "password": password})


async def _audit(client, t, action: str) -> list[dict]:
    r = await client.get("/v1/audit", params={"action": action}, headers=t.admin.headers)
    assert r.status_code == 200, r.text
    return r.json()["items"]


async def test_concurrent_wrong_passwords_lock_exactly_once_and_all_count(
    racing_client, settings: Settings, owner_conn: asyncpg.Connection
) -> None:
    t = await create_tenant(racing_client)
    attempts = 10
    assert settings.auth.lockout_threshold < attempts
    answers = await asyncio.gather(
        *(_login(racing_client, t.slug, t.admin_email, WRONG) for _ in range(attempts))
    )
    codes = sorted(r.status_code for r in answers)
    assert set(codes) <= {401, 423}, codes
    refused = codes.count(401)  # attempts that got past the check and were counted
    assert refused >= settings.auth.lockout_threshold, codes
    assert (await _login(racing_client, t.slug, t.admin_email, PASSWORD)).status_code == 423
    assert len(await _audit(racing_client, t, "auth.lockout")) == 1
    failed = [e for e in await _audit(racing_client, t, "auth.login") if e["outcome"] == "failure"]
    assert len(failed) == refused
    row = await owner_conn.fetchrow(
        "SELECT failures, locked_until > now() AS locked FROM login_lockouts WHERE tenant_id = $1",
        uuid.UUID(t.id),
    )
    assert row is not None and row["locked"]
    assert row["failures"] == refused
