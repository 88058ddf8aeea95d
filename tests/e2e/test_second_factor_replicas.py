"""One TOTP code sent at once to two gateway processes (replicas sharing PostgreSQL and Redis) signs in once."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pyotp
import pytest

from tests.e2e.conftest import PASSWORD, LiveServer, make_tenant, server_env, start_server, stop_all

if TYPE_CHECKING:
    from tests.conftest import TestDatabase

pytestmark = pytest.mark.e2e
PER_REPLICA = 3
ROUNDS = 3


@pytest.fixture
def replicas(test_db: TestDatabase, tmp_path: Path) -> Iterator[list[LiveServer]]:
    """Two gateways of one deployment: the same database, Redis namespace and key rings."""
    servers: list[LiveServer] = []
    procs: list[subprocess.Popen[bytes]] = []
    prefix: str | None = None
    try:
        # One data dir: the key rings the first gateway generates are the second's too.
        data_dir = tmp_path / "shared"
        data_dir.mkdir()
        for name in ("a", "b"):
            env = server_env(
                test_db,
                data_dir,
                FILEGATE_LOGIN_IP_LIMIT="1000",
                FILEGATE_LOGIN_ACCOUNT_LIMIT="1000",
                FILEGATE_LOCKOUT_THRESHOLD="1000",
            )
            prefix = prefix or env["FILEGATE_REDIS_KEY_PREFIX"]
            env["FILEGATE_REDIS_KEY_PREFIX"] = prefix
            log_path = tmp_path / f"gateway-{name}.log"
            procs.append(start_server(env, log_path))
            servers.append(LiveServer(f"http://127.0.0.1:{env['FILEGATE_PORT']}", log_path, env))
        yield servers
    finally:
        stop_all(procs)


def _enrolled_user(server: LiveServer) -> tuple[str, str, str]:
    t = make_tenant(server)
    admin = {"Authorization": f"Bearer {t.access_token}"}
    email = f"user@{t.slug}.test"
    r = httpx.post(
        f"{server.url}/v1/users", json={"email": email, "role": "user", "password": PASSWORD}, headers=admin
    )
    assert r.status_code == 201, r.text
    login = httpx.post(
        f"{server.url}/v1/auth/login", json={"tenant": t.slug, "email": email, "password": PASSWORD}
    )
    user = {"Authorization": f"Bearer {login.json()['access_token']}"}
    secret = httpx.post(f"{server.url}/v1/auth/mfa/totp", headers=user).json()["secret"]
    ok = httpx.post(
        f"{server.url}/v1/auth/mfa/totp/confirm", json={"code": pyotp.TOTP(secret).now()}, headers=user
    )
    assert ok.status_code == 200, ok.text
    return t.slug, email, secret


def test_one_totp_code_sent_to_two_replicas_at_once_signs_in_once(replicas: list[LiveServer]) -> None:
    async def race(slug: str, email: str, code: str) -> list[int]:
        body = {"tenant": slug, "email": email, "password": PASSWORD, "totp": code}
        async with httpx.AsyncClient(timeout=30) as client:
            answers = await asyncio.gather(
                *(
                    client.post(f"{server.url}/v1/auth/login", json=body)
                    for server in replicas
                    for _ in range(PER_REPLICA)
                )
            )
        for r in answers:
            assert r.status_code == 200 or r.json()["code"] == "invalid_totp", r.text
        return [r.status_code for r in answers]

    for _ in range(ROUNDS):
        slug, email, secret = _enrolled_user(replicas[0])
        statuses = asyncio.run(race(slug, email, pyotp.TOTP(secret).at(time.time() + 30)))
        assert statuses.count(200) == 1, statuses
