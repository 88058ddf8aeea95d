"""The account lockout lives in the database: losing Redis (a restart without persistence, a failover, an
eviction, anyone able to delete keys) neither unlocks an account nor forgets its failed logins."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
from redis.asyncio import Redis

from gateway.settings import Settings
from tests.conftest import REDIS
from tests.factories import PASSWORD, create_tenant
from tests.redis_loss import lose_redis_keys
from workers.settings import build_services, worker_settings

WRONG = "not the password at all"


async def _login(client, slug: str, email: str, password: str):
    return await client.post("/v1/auth/login", json={"tenant": slug, "email": email, "password": password})


async def _audit(client, t, action: str) -> list[dict]:
    r = await client.get("/v1/audit", params={"action": action}, headers=t.admin.headers)
    assert r.status_code == 200, r.text
    return r.json()["items"]


async def test_lockout_survives_redis_losing_its_keys(client, settings: Settings) -> None:
    t = await create_tenant(client)
    for _ in range(settings.auth.lockout_threshold):
        assert (await _login(client, t.slug, t.admin_email, WRONG)).status_code == 401
    assert (await _login(client, t.slug, t.admin_email, PASSWORD)).status_code == 423
    assert await lose_redis_keys(settings.redis.key_prefix) > 0
    r = await _login(client, t.slug, t.admin_email, PASSWORD)  # the attacker's fresh guesses: none
    assert r.status_code == 423, r.text
    assert r.json()["code"] == "account_locked"
    assert 0 < int(r.headers["retry-after"]) <= settings.auth.lockout_seconds


async def test_unknown_email_locks_like_a_known_one_and_the_table_holds_no_email(
    client, settings: Settings, owner_conn: asyncpg.Connection
) -> None:
    t = await create_tenant(client)
    nobody = f"nobody@{t.slug}.test"
    for _ in range(settings.auth.lockout_threshold):
        assert (await _login(client, t.slug, nobody, WRONG)).status_code == 401
    await lose_redis_keys(settings.redis.key_prefix)
    assert (await _login(client, t.slug, nobody, WRONG)).status_code == 423
    rows = await owner_conn.fetch("SELECT * FROM login_lockouts WHERE tenant_id = $1", uuid.UUID(t.id))
    assert len(rows) == 1
    assert not any(t.slug in str(v) or "nobody" in str(v) for v in rows[0].values())


async def test_failures_counted_before_a_flush_still_count(client, settings: Settings) -> None:
    t = await create_tenant(client)
    for _ in range(settings.auth.lockout_threshold - 1):
        assert (await _login(client, t.slug, t.admin_email, WRONG)).status_code == 401
    await lose_redis_keys(settings.redis.key_prefix)
    assert (await _login(client, t.slug, t.admin_email, WRONG)).status_code == 401  # the last one
    r = await _login(client, t.slug, t.admin_email, PASSWORD)
    assert r.status_code == 423, r.text
    assert len(await _audit(client, t, "auth.lockout")) == 1


async def test_success_ends_the_run_of_failures(client, settings: Settings) -> None:
    t = await create_tenant(client)
    for _ in range(settings.auth.lockout_threshold - 1):
        assert (await _login(client, t.slug, t.admin_email, WRONG)).status_code == 401
    assert (await _login(client, t.slug, t.admin_email, PASSWORD)).status_code == 200
    for _ in range(settings.auth.lockout_threshold - 1):  # a new run: none of these locks
        assert (await _login(client, t.slug, t.admin_email, WRONG)).status_code == 401
    assert await _audit(client, t, "auth.lockout") == []


async def test_purge_job_deletes_only_rows_that_no_longer_count(
    client, settings: Settings, owner_conn: asyncpg.Connection
) -> None:
    t = await create_tenant(client)
    tenant_id = uuid.UUID(t.id)
    now = datetime.now(UTC)
    period = timedelta(seconds=settings.auth.lockout_seconds)
    rows = {
        # account: (failures, locked_until, updated_at)
        "stale": (3, None, now - period - timedelta(minutes=1)),
        "lock-ran-out": (5, now - timedelta(minutes=1), now - period - timedelta(minutes=2)),
        "counting": (3, None, now - timedelta(minutes=1)),
        "locked": (5, now + timedelta(minutes=5), now - period - timedelta(minutes=1)),
        "lock-ran-out-recently-failed": (6, now - timedelta(minutes=1), now - timedelta(minutes=1)),
    }
    for name, (failures, locked_until, updated_at) in rows.items():
        await owner_conn.execute(
            "INSERT INTO login_lockouts (tenant_id, account, failures, locked_until, updated_at) "
            "VALUES ($1, $2, $3, $4, $5)",
            tenant_id,
            hashlib.sha256(name.encode()).hexdigest()[:32],
            failures,
            locked_until,
            updated_at,
        )
    jobs = {job.name: job for job in worker_settings(settings)["cron_jobs"]}
    redis = Redis.from_url(REDIS)
    services = build_services(settings, redis)
    try:
        purged = await jobs["cron:purge_stale_lockouts"].coroutine({"services": services})
    finally:
        await services.db.dispose()
        await redis.aclose()
    assert purged >= 2
    left = {
        r["account"]
        for r in await owner_conn.fetch("SELECT account FROM login_lockouts WHERE tenant_id = $1", tenant_id)
    }
    assert left == {
        hashlib.sha256(n.encode()).hexdigest()[:32]
        for n in ("counting", "locked", "lock-ran-out-recently-failed")
    }
