"""Revocation lives in the database: losing Redis (a restart without persistence, a failover, an
eviction) never brings a revoked token, session or key back. Each test revokes, then deletes the test's
Redis keys, then presents the revoked credential again."""

from __future__ import annotations

import uuid

from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from gateway.keys import load_record_seal
from gateway.security.sessions import SESSION_COOKIE, SessionStore
from gateway.settings import Settings
from tests.conftest import REDIS
from tests.factories import PASSWORD, bearer, create_api_key, create_tenant, create_user, login
from tests.redis_loss import lose_redis_keys


async def _me(client: AsyncTestClient, headers: dict[str, str]) -> int:  # type: ignore[type-arg]
    return (await client.get("/v1/me", headers=headers)).status_code


async def test_logged_out_access_token_stays_refused_after_redis_loses_its_keys(client, settings) -> None:
    t = await create_tenant(client)
    _, s = await create_user(client, t, "user")
    assert await _me(client, s.headers) == 200
    r = await client.post("/v1/auth/logout", json={"refresh_token": s.refresh_token}, headers=s.headers)
    assert r.status_code == 204
    assert await _me(client, s.headers) == 401
    await lose_redis_keys(settings.redis.key_prefix)
    assert await _me(client, s.headers) == 401


async def test_access_token_logged_out_without_its_refresh_token_stays_refused_after_redis_loss(
    client, settings
) -> None:
    t = await create_tenant(client)
    _, s = await create_user(client, t, "user")
    assert (await client.post("/v1/auth/logout", headers=s.headers)).status_code == 204
    await lose_redis_keys(settings.redis.key_prefix)
    assert await _me(client, s.headers) == 401


async def test_disabled_users_token_stays_refused_after_redis_loses_its_keys(client, settings) -> None:
    t = await create_tenant(client)
    user, s = await create_user(client, t, "user")
    assert await _me(client, s.headers) == 200
    r = await client.patch(f"/v1/users/{user['id']}", json={"disabled": True}, headers=t.admin.headers)
    assert r.status_code == 200
    await lose_redis_keys(settings.redis.key_prefix)
    assert await _me(client, s.headers) == 401


async def test_demoted_users_old_token_stays_refused_after_redis_loses_its_keys(client, settings) -> None:
    t = await create_tenant(client)
    user, s = await create_user(client, t, "manager")
    assert (await client.get("/v1/users", headers=s.headers)).status_code == 200
    r = await client.patch(f"/v1/users/{user['id']}", json={"role": "viewer"}, headers=t.admin.headers)
    assert r.status_code == 200
    await lose_redis_keys(settings.redis.key_prefix)
    # The old token still says "manager": it must not answer at all, let alone with a manager's rights.
    assert (await client.get("/v1/users", headers=s.headers)).status_code == 401
    fresh = await login(client, t.slug, user["email"])
    me = await client.get("/v1/me", headers=fresh.headers)
    assert me.status_code == 200 and me.json()["role"] == "viewer"


async def test_password_change_revocation_survives_redis_losing_its_keys(client, settings) -> None:
    t = await create_tenant(client)
    user, s1 = await create_user(client, t, "user")
    s2 = await login(client, t.slug, user["email"])
    new = "An0ther-long-passphrase!"
    r = await client.post(
        "/v1/me/password", json={"current_password": PASSWORD, "new_password": new}, headers=s1.headers
    )
    assert r.status_code == 204
    await lose_redis_keys(settings.redis.key_prefix)
    for s in (s1, s2):
        assert await _me(client, s.headers) == 401
        r = await client.post("/v1/auth/refresh", json={"refresh_token": s.refresh_token})
        assert r.status_code == 401
    fresh = await login(client, t.slug, user["email"], new)
    assert await _me(client, fresh.headers) == 200


async def test_erased_users_token_stays_refused_after_redis_loses_its_keys(client, settings) -> None:
    t = await create_tenant(client)
    user, s = await create_user(client, t, "manager")
    key = await create_api_key(client, s, ["users.read"])
    assert (await client.delete(f"/v1/users/{user['id']}", headers=t.admin.headers)).status_code == 204
    await lose_redis_keys(settings.redis.key_prefix)
    assert await _me(client, s.headers) == 401
    assert await _me(client, bearer(key["key"])) == 401


async def test_revoked_api_key_stays_refused_after_redis_loses_its_keys(client, settings) -> None:
    t = await create_tenant(client)
    key = await create_api_key(client, t.admin, ["users.read"])
    assert await _me(client, bearer(key["key"])) == 200
    assert (await client.delete(f"/v1/api-keys/{key['id']}", headers=t.admin.headers)).status_code == 204
    await lose_redis_keys(settings.redis.key_prefix)
    assert await _me(client, bearer(key["key"])) == 401


async def test_demoted_creators_cached_key_record_is_not_trusted_when_the_mark_is_evicted(
    client, settings
) -> None:
    t = await create_tenant(client)
    user, s = await create_user(client, t, "manager")
    key = await create_api_key(client, s, ["users.read"])
    assert (await client.get("/v1/users", headers=bearer(key["key"]))).status_code == 200
    r = await client.patch(f"/v1/users/{user['id']}", json={"role": "viewer"}, headers=t.admin.headers)
    assert r.status_code == 200
    # An eviction takes everything but the key's cached record (which still says "manager").
    await lose_redis_keys(settings.redis.key_prefix, spare=lambda k: ":apikey:" in k)
    assert (await client.get("/v1/users", headers=bearer(key["key"]))).status_code == 403


async def test_token_of_a_family_revoked_by_reuse_stays_refused_after_redis_loss(client, settings) -> None:
    t = await create_tenant(client)
    _, s = await create_user(client, t, "user")
    first = (await client.post("/v1/auth/refresh", json={"refresh_token": s.refresh_token})).json()
    replay = await client.post("/v1/auth/refresh", json={"refresh_token": s.refresh_token})
    assert replay.status_code == 401 and replay.json()["code"] == "token_reused"
    await lose_redis_keys(settings.redis.key_prefix)
    assert await _me(client, bearer(first["access_token"])) == 401


async def test_browser_session_of_a_disabled_user_stays_refused_when_its_revocation_mark_is_evicted(
    client, settings: Settings
) -> None:
    t = await create_tenant(client)
    user, _ = await create_user(client, t, "manager")
    redis = Redis.from_url(REDIS, decode_responses=True)
    try:
        store = SessionStore(
            redis, settings.redis.key_prefix, load_record_seal(settings), idle=3600, absolute=3600
        )
        session_id, _ = await store.create(uuid.UUID(t.id), uuid.UUID(user["id"]), "manager", epoch=0)
        cookie = {"Cookie": f"{SESSION_COOKIE}={session_id}"}
        assert await _me(client, cookie) == 200
        r = await client.patch(f"/v1/users/{user['id']}", json={"disabled": True}, headers=t.admin.headers)
        assert r.status_code == 200
        assert await _me(client, cookie) == 401
        # An eviction takes the revocation state but spares the session itself.
        await lose_redis_keys(settings.redis.key_prefix, spare=lambda k: ":session:" in k)
        assert await _me(client, cookie) == 401
    finally:
        await redis.aclose()


async def test_a_flush_costs_one_database_read_per_session_then_redis_answers_again(client, settings) -> None:
    import asyncio

    import jwt
    from sqlalchemy import event

    from gateway.db import Database, create_engine
    from gateway.security.revocation import CACHE_TTL, PENDING_TTL, Revocations

    t = await create_tenant(client)
    _, s = await create_user(client, t, "user")
    claims = jwt.decode(s.access_token, options={"verify_signature": False})
    args = (uuid.UUID(claims["tid"]), uuid.UUID(claims["sub"]), claims["epoch"], uuid.UUID(claims["sid"]))
    await lose_redis_keys(settings.redis.key_prefix)
    reads: list[str] = []

    def count(conn, cursor, statement, *rest) -> None:  # type: ignore[no-untyped-def]
        if "refresh_tokens" in statement or "session_epoch" in statement:
            reads.append(statement)

    redis = Redis.from_url(REDIS, decode_responses=True)
    db = Database(create_engine(settings))
    event.listen(db.engine.sync_engine, "before_cursor_execute", count)
    try:
        revocations = Revocations(redis, settings.redis.key_prefix, db, load_record_seal(settings))
        # A burst right after the flush shares one read; later checks are answered by Redis again.
        assert await asyncio.gather(*[revocations.is_live(*args) for _ in range(20)]) == [True] * 20
        assert len(reads) == 2, reads  # the user's epoch and the family's state, once
        assert await asyncio.gather(*[revocations.is_live(*args) for _ in range(5)]) == [True] * 5
        assert len(reads) == 2, reads
        keys = [k async for k in redis.scan_iter(match=f"{settings.redis.key_prefix}auth:*")]
        assert len(keys) == 2
        for key in keys:
            assert PENDING_TTL < await redis.ttl(key) <= CACHE_TTL
    finally:
        await db.dispose()
        await redis.aclose()


async def test_a_revocation_is_cached_for_long_once_committed(client, settings) -> None:
    from gateway.security.revocation import PENDING_TTL

    t = await create_tenant(client)
    user, _ = await create_user(client, t, "user")
    r = await client.patch(f"/v1/users/{user['id']}", json={"disabled": True}, headers=t.admin.headers)
    assert r.status_code == 200
    redis = Redis.from_url(REDIS, decode_responses=True)
    try:
        key = f"{settings.redis.key_prefix}auth:epoch:{user['id']}"
        stored = await redis.get(key)
        assert stored is not None and load_record_seal(settings).open(key, stored) == "1"
        # Written again after the commit with the long TTL, not left at the pre-commit one.
        assert await redis.ttl(key) > PENDING_TTL
    finally:
        await redis.aclose()


async def test_revoked_api_key_stays_refused_when_only_its_tombstone_is_evicted(client, settings) -> None:
    t = await create_tenant(client)
    key = await create_api_key(client, t.admin, ["users.read"])
    assert await _me(client, bearer(key["key"])) == 200  # its record is now cached
    assert (await client.delete(f"/v1/api-keys/{key['id']}", headers=t.admin.headers)).status_code == 204
    await lose_redis_keys(settings.redis.key_prefix, spare=lambda k: ":revoked:key:" not in k)
    assert await _me(client, bearer(key["key"])) == 401
