"""Browser sessions: the cookie authenticates, unsafe methods need the CSRF token, logout and disabling
end the session at once, idle and absolute timeouts hold; bearer tokens never need CSRF."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from gateway.keys import load_record_seal
from gateway.security.sessions import SESSION_COOKIE, SessionStore
from gateway.settings import Settings
from tests.conftest import REDIS
from tests.factories import TenantHandle, create_tenant, create_user


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[SessionStore]:
    """The app's session store, reached over a Redis connection of the test's own event loop."""
    redis = Redis.from_url(REDIS, decode_responses=True)
    yield SessionStore(
        redis,
        settings.redis.key_prefix,
        load_record_seal(settings),
        idle=settings.auth.session_idle,
        absolute=3600,
    )
    await redis.aclose()


async def browser_of(store: SessionStore, tenant: TenantHandle, user_id: str, role: str) -> dict[str, str]:
    session_id, _ = await store.create(uuid.UUID(tenant.id), uuid.UUID(user_id), role, epoch=0)
    return {"Cookie": f"{SESSION_COOKIE}={session_id}"}


async def test_cookie_session_needs_csrf_on_unsafe_methods_only(
    client: AsyncTestClient,  # type: ignore[type-arg]
    store: SessionStore,
) -> None:
    tenant = await create_tenant(client)
    cookie = await browser_of(store, tenant, tenant.admin_id, "admin")
    me = await client.get("/v1/me", headers=cookie)
    assert me.status_code == 200 and me.json()["user_id"] == tenant.admin_id
    info = await client.get("/v1/auth/session", headers=cookie)
    assert info.status_code == 200
    csrf = info.json()["csrf_token"]
    assert len(csrf) >= 40 and info.json()["role"] == "admin"

    body = {"name": "k", "scopes": ["users.read"]}
    # A cross-site form post carries the cookie but cannot know the token.
    for headers in (cookie, {**cookie, "X-CSRF-Token": "forged"}, {**cookie, "X-CSRF-Token": ""}):
        r = await client.post("/v1/api-keys", json=body, headers=headers)
        assert r.status_code == 403, r.text
        assert r.json()["code"] == "csrf_failed"
    ok = await client.post("/v1/api-keys", json=body, headers={**cookie, "X-CSRF-Token": csrf})
    assert ok.status_code == 201, ok.text
    # Bearer tokens and API keys never need it, cookie or not.
    r = await client.post("/v1/api-keys", json=body, headers={**tenant.admin.headers, **cookie})
    assert r.status_code == 201, r.text
    # /v1/auth/session is only for cookies.
    assert (await client.get("/v1/auth/session", headers=tenant.admin.headers)).status_code == 401


async def test_logout_ends_the_session_and_clears_the_cookie(
    client: AsyncTestClient,  # type: ignore[type-arg]
    store: SessionStore,
) -> None:
    tenant = await create_tenant(client)
    cookie = await browser_of(store, tenant, tenant.admin_id, "admin")
    csrf = (await client.get("/v1/auth/session", headers=cookie)).json()["csrf_token"]
    assert (await client.post("/v1/auth/logout", headers=cookie)).status_code == 403  # CSRF first
    r = await client.post("/v1/auth/logout", headers={**cookie, "X-CSRF-Token": csrf})
    assert r.status_code == 204, r.text
    set_cookie = r.headers["set-cookie"]
    assert set_cookie.startswith(f"{SESSION_COOKIE}=") and "Max-Age=0" in set_cookie
    again = await client.get("/v1/me", headers=cookie)
    assert again.status_code == 401 and again.json()["code"] == "invalid_token"
    events = (await client.get("/v1/audit?action=auth.logout", headers=tenant.admin.headers)).json()["items"]
    assert events and events[0]["actor"] == {"type": "user", "id": tenant.admin_id}


async def test_disabling_or_demoting_the_user_ends_their_sessions(
    client: AsyncTestClient,  # type: ignore[type-arg]
    store: SessionStore,
) -> None:
    tenant = await create_tenant(client)
    user, _ = await create_user(client, tenant, "manager")
    other, _ = await create_user(client, tenant, "user")
    cookie = await browser_of(store, tenant, user["id"], "manager")
    bystander = await browser_of(store, tenant, other["id"], "user")
    assert (await client.get("/v1/me", headers=cookie)).status_code == 200
    await asyncio.sleep(0.01)  # the revocation mark is "revoked at or before now"
    r = await client.patch(f"/v1/users/{user['id']}", json={"disabled": True}, headers=tenant.admin.headers)
    assert r.status_code == 200, r.text
    assert (await client.get("/v1/me", headers=cookie)).status_code == 401
    assert (await client.get("/v1/me", headers=bystander)).status_code == 200


async def test_idle_and_absolute_timeouts(settings: Settings) -> None:
    import msgspec

    from gateway.app import create_app

    # A gateway whose sessions idle out after 1 s (the store renews a session's timer with its own idle).
    quick = msgspec.structs.replace(settings, auth=msgspec.structs.replace(settings.auth, session_idle=1))
    redis = Redis.from_url(REDIS, decode_responses=True)
    try:
        async with AsyncTestClient(app=create_app(quick)) as client:
            tenant = await create_tenant(client)
            idle = SessionStore(
                redis, settings.redis.key_prefix, load_record_seal(settings), idle=1, absolute=3600
            )
            cookie = await browser_of(idle, tenant, tenant.admin_id, "admin")
            assert (await client.get("/v1/me", headers=cookie)).status_code == 200
            await asyncio.sleep(0.6)
            assert (
                await client.get("/v1/me", headers=cookie)
            ).status_code == 200  # use renews the idle timer
            await asyncio.sleep(2.2)
            assert (await client.get("/v1/me", headers=cookie)).status_code == 401

            short = SessionStore(
                redis, settings.redis.key_prefix, load_record_seal(settings), idle=3600, absolute=1
            )
            cookie = await browser_of(short, tenant, tenant.admin_id, "admin")
            assert (await client.get("/v1/me", headers=cookie)).status_code == 200
            await asyncio.sleep(1.2)
            # Past its absolute end: gone, however recently it was used.
            assert (await client.get("/v1/me", headers=cookie)).status_code == 401
    finally:
        await redis.aclose()


async def test_garbage_and_foreign_cookies(
    client: AsyncTestClient,  # type: ignore[type-arg]
    store: SessionStore,
) -> None:
    tenant = await create_tenant(client)
    for value in ("x", "a" * 500, "../../etc", "%00"):
        r = await client.get("/v1/me", headers={"Cookie": f"{SESSION_COOKIE}={value}"})
        assert r.status_code == 401, (value, r.text)
    # A session of tenant A names tenant A only: tenant B's resources stay 404.
    other = await create_tenant(client)
    cookie = await browser_of(store, tenant, tenant.admin_id, "admin")
    r = await client.get(f"/v1/users/{other.admin_id}", headers=cookie)
    assert r.status_code == 404
