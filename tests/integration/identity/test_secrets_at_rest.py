"""TOTP secrets at rest: sealed by the credential manager, bound to their row, rotatable with the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pyotp
import pytest
from litestar.testing import AsyncTestClient

from connectors.credentials import CredentialManager, LocalKeyRing
from gateway import rotation
from gateway.app import create_app
from gateway.db import Database, create_engine
from gateway.keys import credential_keyring_path
from tests.factories import PASSWORD, create_tenant, create_user


async def _enroll(client, t, role: str = "user"):
    user, session = await create_user(client, t, role)
    secret = (await client.post("/v1/auth/mfa/totp", headers=session.headers)).json()["secret"]
    r = await client.post(
        "/v1/auth/mfa/totp/confirm", json={"code": pyotp.TOTP(secret).now()}, headers=session.headers
    )
    assert r.status_code == 200
    return user, secret


async def _totp_login(client, t, user, secret) -> int:
    import time

    code = pyotp.TOTP(secret).at(time.time() + 30)
    r = await client.post(
        "/v1/auth/login", json={"tenant": t.slug, "email": user["email"], "password": PASSWORD, "totp": code}
    )
    return r.status_code


async def test_totp_secret_is_sealed_and_bound_to_its_user(client, owner_conn) -> None:
    t = await create_tenant(client)
    alice, alice_secret = await _enroll(client, t)
    bob, _ = await _enroll(client, t)
    stored = await owner_conn.fetchval("SELECT totp_secret FROM users WHERE id = $1::uuid", alice["id"])
    assert alice_secret not in stored
    assert json.loads(stored)["kek"] >= 1
    # Copy Alice's sealed secret onto Bob: it does not open as Bob's, so Bob cannot log in with her codes.
    await owner_conn.execute("UPDATE users SET totp_secret = $1 WHERE id = $2::uuid", stored, bob["id"])
    assert await _totp_login(client, t, bob, alice_secret) == 401


def _cli_rotate(settings) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FILEGATE_")}
    env.update(
        FILEGATE_DATABASE_URL=settings.database.url or "",
        FILEGATE_DATA_DIR=str(settings.server.data_dir),
        FILEGATE_REDIS_URL=settings.redis.url or "",
    )
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", "keys", "rotate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
async def own_db_settings(settings):
    """A database of this test's own: rotation visits every tenant, and parallel tests have other rings."""
    import asyncio
    import uuid

    import msgspec

    from gateway.migrate import upgrade
    from tests.conftest import APP_ROLE, TestDatabase, _drop, _recreate

    db = TestDatabase(f"filegate_rotation_{uuid.uuid4().hex[:10]}")
    await _recreate(db)
    await asyncio.to_thread(upgrade, db.owner_url, APP_ROLE)
    yield msgspec.structs.replace(
        settings, database=msgspec.structs.replace(settings.database, url=db.app_url)
    )
    await _drop(db)


async def test_keys_rotate_rewraps_and_survives_a_kill(own_db_settings) -> None:
    import asyncpg

    settings = own_db_settings
    owner_conn = await asyncpg.connect(
        settings.database.url.replace("postgresql+asyncpg://filegate_app@", "postgresql://postgres@")
    )
    try:
        async with AsyncTestClient(app=create_app(settings)) as client:
            await _rotation_scenario(client, settings, owner_conn)
    finally:
        await owner_conn.close()


async def _rotation_scenario(client, settings, owner_conn) -> None:
    t = await create_tenant(client)
    enrolled = [await _enroll(client, t) for _ in range(3)]
    path = credential_keyring_path(settings)
    assert LocalKeyRing.load(str(path)).versions == [1]

    # A rotation killed after one row: the ring has key 2, one secret is rewrapped, two are not.
    ring = LocalKeyRing.load(str(path)).with_new_key()
    ring.save(path)
    db = Database(create_engine(settings))
    calls = 0

    def die_after_one(_: int) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise KeyboardInterrupt

    try:
        with pytest.raises(KeyboardInterrupt):
            await rotation.rewrap_all(db, CredentialManager(ring), die_after_one)
        assert await rotation.pending(db, CredentialManager(ring)) == 2  # the others still wait
    finally:
        await db.dispose()

    # The rerun resumes (no third key) and finishes.
    out = _cli_rotate(settings)
    assert out.returncode == 0, out.stderr
    assert "resuming" in out.stderr
    assert LocalKeyRing.load(str(path)).versions == [1, 2]
    keks = [
        json.loads(r["totp_secret"])["kek"]
        for r in await owner_conn.fetch(
            "SELECT totp_secret FROM users WHERE tenant_id = $1::uuid AND totp_secret IS NOT NULL", t.id
        )
    ]
    assert keks == [2, 2, 2]

    # A fresh gateway with the rotated ring still verifies every user's codes.
    async with AsyncTestClient(app=create_app(settings)) as fresh:
        for user, secret in enrolled:
            assert await _totp_login(fresh, t, user, secret) == 200

    # The next rotation adds key 3 and rewraps all three secrets.
    out = _cli_rotate(settings)
    assert out.returncode == 0, out.stderr
    assert LocalKeyRing.load(str(path)).versions == [1, 2, 3]
    assert all(
        json.loads(r["totp_secret"])["kek"] == 3
        for r in await owner_conn.fetch(
            "SELECT totp_secret FROM users WHERE tenant_id = $1::uuid AND totp_secret IS NOT NULL", t.id
        )
    )


async def test_keys_rotate_in_production_rotates_the_ring_keys_init_made(own_db_settings, tmp_path) -> None:
    """Production never generates a ring, so `keys rotate` must read the one `keys init` made; the database
    URL comes from a mounted secret file, as in a container."""
    ring = tmp_path / "secrets" / "credentials.json"
    url_file = tmp_path / "database-url"
    url_file.write_text(own_db_settings.database.url + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FILEGATE_")}
    env.update(
        FILEGATE_MODE="production",
        FILEGATE_DATA_DIR=str(tmp_path / "var"),
        FILEGATE_KEYRING=str(ring),
        FILEGATE_JWT_KEYRING=str(tmp_path / "secrets" / "jwt.json"),
        FILEGATE_DATABASE_URL_FILE=str(url_file),
    )

    def filegate(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gateway.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    created = filegate("keys", "init")
    assert created.returncode == 0, created.stderr
    assert LocalKeyRing.load(str(ring)).versions == [1]
    rotated = filegate("keys", "rotate")
    assert rotated.returncode == 0, rotated.stderr
    assert LocalKeyRing.load(str(ring)).versions == [1, 2]
