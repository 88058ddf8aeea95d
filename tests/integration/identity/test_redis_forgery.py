"""Whoever can write to Redis (a shared production Redis, another service on it, a compromised
neighbour) must not be able to grant access. Each test writes what an attacker would, with a raw Redis
client under the test's prefix, and presents the credential the forgery was meant to make good."""

from __future__ import annotations

import hashlib
import json
import secrets
import time
import uuid

import jwt
from redis.asyncio import Redis
from structlog.testing import capture_logs

from gateway.security.sessions import SESSION_COOKIE
from tests.conftest import REDIS
from tests.factories import bearer, create_api_key, create_tenant, create_user


async def _me(client, headers: dict[str, str]) -> int:  # type: ignore[no-untyped-def]
    return (await client.get("/v1/me", headers=headers)).status_code


def _forgery_alerted(logs: list[dict[str, object]]) -> bool:
    return any(e["event"] == "security.alert" and e.get("kind") == "redis_record_forged" for e in logs)


async def test_a_session_record_written_into_redis_by_an_attacker_signs_nobody_in(client, settings) -> None:
    t = await create_tenant(client)
    prefix = settings.redis.key_prefix
    cookie_value = secrets.token_urlsafe(32)  # the attacker's choice: they hold it in their browser
    now = time.time()
    record = {
        "tenant_id": t.id,
        "user_id": t.admin_id,
        "role": "admin",
        "csrf_token": "attacker-knows-this",
        "created_at": now,
        "expires_at": now + 3600,
        "epoch": 0,
    }
    redis = Redis.from_url(REDIS, decode_responses=True)
    key = f"{prefix}session:{hashlib.sha256(cookie_value.encode()).hexdigest()}"
    try:
        await redis.set(key, json.dumps(record), ex=3600)
        cookie = {"Cookie": f"{SESSION_COOKIE}={cookie_value}"}
        with capture_logs() as logs:
            assert await _me(client, cookie) == 401
            body = {"name": "backdoor", "scopes": ["users.read"]}
            r = await client.post(
                "/v1/api-keys", json=body, headers={**cookie, "X-CSRF-Token": record["csrf_token"]}
            )
            assert r.status_code == 401, r.text
        # Said once (the forged record is gone after the first look), never with the value.
        alerts = [
            e for e in logs if e["event"] == "security.alert" and e.get("kind") == "redis_record_forged"
        ]
        assert len(alerts) == 1, logs
        assert await redis.exists(key) == 0
        assert record["csrf_token"] not in str(logs)

    finally:
        await redis.aclose()


async def test_an_api_key_record_forged_in_redis_is_not_trusted(client, settings) -> None:
    t = await create_tenant(client)
    prefix = settings.redis.key_prefix
    redis = Redis.from_url(REDIS, decode_responses=True)
    try:
        # A key id nobody issued, a secret the attacker knows, a record naming the tenant's admin.
        key_id = uuid.uuid4()
        secret = secrets.token_urlsafe(32)
        record = {
            "tenant_id": t.id,
            "secret_hash": hashlib.sha256(secret.encode()).hexdigest(),
            "scopes": ["users.read", "users.write", "api_keys.write"],
            "expires_at": None,
            "creator_id": t.admin_id,
            "creator_role": "admin",
            "creator_epoch": "0",
            "usable": True,
        }
        await redis.set(f"{prefix}apikey:{key_id}", json.dumps(record), ex=300)
        await redis.set(f"{prefix}auth:epoch:{t.admin_id}", "0", ex=300)
        with capture_logs() as logs:
            assert await _me(client, bearer(f"fg_{key_id.hex}_{secret}")) == 401
        assert _forgery_alerted(logs), logs

        # A real key: its cached record rewritten with the attacker's secret and a wider reach.
        real = await create_api_key(client, t.admin, ["policy.read"])
        assert (await client.get("/v1/policy", headers=bearer(real["key"]))).status_code == 200
        real_id = uuid.UUID(real["id"])
        record["scopes"] = ["users.read"]
        await redis.set(f"{prefix}apikey:{real_id}", json.dumps(record), ex=300)
        assert await _me(client, bearer(f"fg_{real_id.hex}_{secret}")) == 401
        # The genuine holder still gets exactly what the database says.
        assert (await client.get("/v1/policy", headers=bearer(real["key"]))).status_code == 200
        assert (await client.get("/v1/users", headers=bearer(real["key"]))).status_code == 403
    finally:
        await redis.aclose()


async def test_a_revocation_cache_entry_rewritten_in_redis_does_not_bring_a_revoked_token_back(
    client, settings
) -> None:
    t = await create_tenant(client)
    prefix = settings.redis.key_prefix
    redis = Redis.from_url(REDIS, decode_responses=True)
    try:
        # A logged-out session: its family is revoked; the attacker says "live" again.
        _, s = await create_user(client, t, "user")
        sid = jwt.decode(s.access_token, options={"verify_signature": False})["sid"]
        assert (await client.post("/v1/auth/logout", headers=s.headers)).status_code == 204
        assert await _me(client, s.headers) == 401
        await redis.set(f"{prefix}auth:family:{sid}", "live", ex=3600)
        with capture_logs() as logs:
            assert await _me(client, s.headers) == 401
        assert _forgery_alerted(logs), logs
        assert await _me(client, s.headers) == 401  # and it stays refused

        # A disabled user: the epoch moved on; the attacker writes back the token's older epoch.
        user, s2 = await create_user(client, t, "manager")
        assert await _me(client, s2.headers) == 200
        r = await client.patch(f"/v1/users/{user['id']}", json={"disabled": True}, headers=t.admin.headers)
        assert r.status_code == 200
        await redis.set(f"{prefix}auth:epoch:{user['id']}", "0", ex=3600)
        assert await _me(client, s2.headers) == 401

        # A revoked API key: the tombstone deleted, and the record the gateway then cached from the
        # database ("not usable") edited to say "usable". Whatever wraps the record stays as it was.
        key = await create_api_key(client, t.admin, ["users.read"])
        assert await _me(client, bearer(key["key"])) == 200
        assert (await client.delete(f"/v1/api-keys/{key['id']}", headers=t.admin.headers)).status_code == 204
        await redis.delete(f"{prefix}revoked:key:{key['id']}")
        assert await _me(client, bearer(key["key"])) == 401
        cached = await redis.get(f"{prefix}apikey:{key['id']}")
        assert cached is not None and '"usable":false' in cached
        await redis.set(
            f"{prefix}apikey:{key['id']}", cached.replace('"usable":false', '"usable":true'), ex=300
        )
        assert await _me(client, bearer(key["key"])) == 401
    finally:
        await redis.aclose()


async def test_a_session_record_copied_before_logout_is_trusted_for_one_idle_period_at_most(
    client, settings
) -> None:
    from gateway.keys import load_record_seal
    from gateway.security.sessions import SessionStore

    t = await create_tenant(client)
    idle = settings.auth.session_idle
    assert idle < 36000
    redis = Redis.from_url(REDIS, decode_responses=True)
    try:
        store = SessionStore(
            redis, settings.redis.key_prefix, load_record_seal(settings), idle=600, absolute=36000
        )
        session_id, _ = await store.create(uuid.UUID(t.id), uuid.UUID(t.admin_id), "admin", epoch=0)
        cookie = {"Cookie": f"{SESSION_COOKIE}={session_id}"}
        assert await _me(client, cookie) == 200  # used: sealed again
        [key] = [k async for k in redis.scan_iter(match=f"{settings.redis.key_prefix}session:*")]
        copied = await redis.get(key)
        assert copied is not None
        not_after = int(copied.split(".")[2])
        assert not_after <= time.time() + idle + 2  # the idle period, not the ten-hour absolute life
        await store.delete(session_id)  # what logout does
        assert await _me(client, cookie) == 401
    finally:
        await redis.aclose()
