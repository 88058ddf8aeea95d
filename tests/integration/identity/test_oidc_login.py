"""OpenID Connect sign-in against a scriptable provider (tests/fakes/oidc_hostile.py): the happy path and
every attack the issue lists, each a test. The gateway runs in-process; the provider is a real HTTP server."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
import msgspec
import pytest
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis
from structlog.testing import capture_logs

from gateway.settings import Settings
from tests.conftest import REDIS, TestDatabase
from tests.factories import TenantHandle, create_tenant, create_user
from tests.fakes.oidc_hostile import SWITCHES, HostileOidc, Tamper
from tests.fakes.oidc_hostile import running as running_hostile
from tests.fakes.ssrf import internal_target
from tests.locks import audit_head_held, waiting

BINDING = "__Host-filegate_oidc"
SESSION = "__Host-filegate_session"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # The provider runs on 127.0.0.1: allow the gateway to fetch a private address (tests only).
    return msgspec.structs.replace(
        settings, connectors=msgspec.structs.replace(settings.connectors, allow_private=True)
    )


@pytest.fixture
def idp() -> Iterator[HostileOidc]:
    with running_hostile(HostileOidc()) as fake:
        yield fake


async def configure(
    client: AsyncTestClient,  # type: ignore[type-arg]
    tenant: TenantHandle,
    idp: HostileOidc,
    **extra: Any,
) -> dict[str, Any]:
    body = {
        "issuer": idp.issuer,
        "client_id": idp.client_id,
        "client_secret": idp.client_secret,
        "create_users": True,
        "default_role": "user",
        **extra,
    }
    r = await client.put("/v1/identity-providers/acme-idp", json=body, headers=tenant.admin.headers)
    assert r.status_code == 200, r.text
    assert idp.client_secret not in r.text and r.json()["client_secret_set"] is True
    return r.json()  # type: ignore[no-any-return]


def cookie_of(response: httpx.Response, name: str) -> tuple[str, str]:
    """(value, the whole Set-Cookie line) of `name` in a response."""
    for line in response.headers.get_list("set-cookie"):
        if line.startswith(f"{name}="):
            return line.split(";", 1)[0].split("=", 1)[1], line
    raise AssertionError(f"no {name} cookie in {response.headers.get_list('set-cookie')}")


async def start(
    client: AsyncTestClient,  # type: ignore[type-arg]
    tenant: TenantHandle,
    **params: str,
) -> tuple[str, str]:
    r = await client.get(
        "/v1/auth/oidc/acme-idp/login", params={"tenant": tenant.slug, **params}, follow_redirects=False
    )
    assert r.status_code == 302, r.text
    binding, _ = cookie_of(r, BINDING)
    return r.headers["location"], binding


def authorize(url: str) -> str:
    """The provider's answer to the browser: a redirect to our callback (not followed)."""
    r = httpx.get(url, follow_redirects=False)
    assert r.status_code == 302, r.text
    return r.headers["location"]


async def callback(
    client: AsyncTestClient,  # type: ignore[type-arg]
    url: str,
    binding: str | None,
) -> httpx.Response:
    parts = urlsplit(url)
    headers = {"Cookie": f"{BINDING}={binding}"} if binding else {}
    return await client.get(f"{parts.path}?{parts.query}", headers=headers, follow_redirects=False)


async def sign_in(client: AsyncTestClient, tenant: TenantHandle, **params: str) -> httpx.Response:  # type: ignore[type-arg]
    url, binding = await start(client, tenant, **params)
    return await callback(client, authorize(url), binding)


async def test_first_login_creates_a_user_with_the_default_role_and_a_session(
    client: AsyncTestClient,  # type: ignore[type-arg]
    idp: HostileOidc,
) -> None:
    tenant = await create_tenant(client)
    await configure(client, tenant, idp)
    url, binding = await start(client, tenant)
    query = parse_qs(urlsplit(url).query)
    assert query["code_challenge_method"] == ["S256"] and query["response_type"] == ["code"]
    assert query["nonce"][0] and query["state"][0] and "openid" in query["scope"][0]
    r = await callback(client, authorize(url), binding)
    assert r.status_code == 302, r.text
    assert r.headers["location"] == "/app/upload"
    session_id, line = cookie_of(r, SESSION)
    attributes = {a.strip().lower() for a in line.split(";")[1:]}
    assert {"secure", "httponly", "path=/", "samesite=lax"} <= attributes
    assert not any(a.startswith("domain") for a in attributes)
    assert idp.last_token_request().pkce_ok is True

    cookie = {"Cookie": f"{SESSION}={session_id}"}
    me = (await client.get("/v1/me", headers=cookie)).json()
    assert me["role"] == "user" and me["email"] == "alice@example.test"
    # The default role and nothing more.
    user_permissions = (
        await client.get("/v1/me", headers=(await create_user(client, tenant, "user"))[1].headers)
    ).json()["permissions"]
    assert me["permissions"] == user_permissions

    # The second login finds the same user by the provider's sub.
    again = await sign_in(client, tenant)
    second = (
        await client.get("/v1/me", headers={"Cookie": f"{SESSION}={cookie_of(again, SESSION)[0]}"})
    ).json()
    assert second["user_id"] == me["user_id"]
    events = (await client.get("/v1/audit", headers=tenant.admin.headers)).json()["items"]
    logins = [e for e in events if e["action"] == "auth.login" and e["details"].get("method") == "oidc"]
    assert [e["outcome"] for e in logins] == ["success", "success"]
    created = [e for e in events if e["action"] == "user.create" and e["target"]["id"] == me["user_id"]]
    assert created and created[0]["details"] == {"role": "user", "via": "oidc"}


async def test_tokens_mode_answers_a_token_pair(client: AsyncTestClient, idp: HostileOidc) -> None:  # type: ignore[type-arg]
    tenant = await create_tenant(client)
    await configure(client, tenant, idp)
    r = await sign_in(client, tenant, response="tokens")
    assert r.status_code == 200, r.text
    pair = r.json()
    assert set(pair) >= {"access_token", "refresh_token", "expires_in"}
    me = await client.get("/v1/me", headers={"Authorization": f"Bearer {pair['access_token']}"})
    assert me.status_code == 200


async def test_replayed_missing_or_foreign_state_is_refused(
    client: AsyncTestClient, idp: HostileOidc
) -> None:  # type: ignore[type-arg]
    tenant = await create_tenant(client)
    await configure(client, tenant, idp)
    url, binding = await start(client, tenant)
    back = authorize(url)
    assert (await callback(client, back, binding)).status_code == 302
    replay = await callback(client, back, binding)
    assert replay.status_code == 400 and replay.json()["code"] == "invalid_state"

    # No state at all.
    parts = urlsplit(back)
    code_only = "&".join(p for p in parts.query.split("&") if not p.startswith("state="))
    r = await client.get(
        f"{parts.path}?{code_only}", headers={"Cookie": f"{BINDING}={binding}"}, follow_redirects=False
    )
    assert r.status_code == 400 and r.json()["code"] == "invalid_state"

    # A state the provider made up (or another login's), and a login finished in another browser.
    idp.tamper = Tamper(state="made-up-state")
    url, binding = await start(client, tenant)
    r = await callback(client, authorize(url), binding)
    assert r.status_code == 400 and r.json()["code"] == "invalid_state"
    idp.tamper = Tamper()
    url, _ = await start(client, tenant)
    r = await callback(client, authorize(url), "another-browser")
    assert r.status_code == 400 and r.json()["code"] == "invalid_state"
    url, _ = await start(client, tenant)
    r = await callback(client, authorize(url), None)
    assert r.status_code == 400
    for response in (replay, r):
        assert SESSION not in " ".join(response.headers.get_list("set-cookie"))


@pytest.mark.parametrize("switch", sorted(SWITCHES))
async def test_every_bad_id_token_is_refused(
    client: AsyncTestClient,  # type: ignore[type-arg]
    idp: HostileOidc,
    switch: str,
) -> None:
    tenant = await create_tenant(client)
    await configure(client, tenant, idp)
    idp.tamper = SWITCHES[switch]
    r = await sign_in(client, tenant)
    assert r.status_code == 401, (switch, r.text)
    assert r.json()["code"] == "oidc_failed"
    assert SESSION not in " ".join(r.headers.get_list("set-cookie"))
    failures = (await client.get("/v1/audit?action=auth.login", headers=tenant.admin.headers)).json()["items"]
    assert failures[0]["outcome"] == "failure" and failures[0]["details"]["method"] == "oidc"
    users = (await client.get("/v1/users", headers=tenant.admin.headers)).json()["items"]
    assert len(users) == 1  # nobody was created


async def test_redirects_off_site_are_refused_before_the_provider_is_asked(
    client: AsyncTestClient,  # type: ignore[type-arg]
    idp: HostileOidc,
) -> None:
    tenant = await create_tenant(client)
    await configure(client, tenant, idp, redirect_origins=["https://app.allowed.example"])
    for target in (
        "https://evil.example/",
        "//evil.example",
        "/\\evil.example",
        "https://app.allowed.example.evil/",
    ):
        r = await client.get(
            "/v1/auth/oidc/acme-idp/login",
            params={"tenant": tenant.slug, "redirect_to": target},
            follow_redirects=False,
        )
        assert r.status_code == 400 and r.json()["code"] == "invalid_redirect", (target, r.text)
    assert not idp.authorizations
    r = await sign_in(client, tenant, redirect_to="https://app.allowed.example/done")
    assert r.status_code == 302 and r.headers["location"] == "https://app.allowed.example/done"


async def test_a_sign_in_state_rewritten_in_redis_cannot_send_the_browser_elsewhere(
    client: AsyncTestClient,  # type: ignore[type-arg]
    idp: HostileOidc,
    settings: Settings,
) -> None:
    """Whoever writes to Redis edits a pending sign-in (its redirect target) under its own key."""
    tenant = await create_tenant(client)
    await configure(client, tenant, idp)
    url, binding = await start(client, tenant)
    redis = Redis.from_url(REDIS, decode_responses=True)
    try:
        [key] = [k async for k in redis.scan_iter(match=f"{settings.redis.key_prefix}oidc:state:*")]
        stored = await redis.get(key)
        assert stored is not None and '"redirect_to":"/app/upload"' in stored
        await redis.set(key, stored.replace("/app/upload", "https://evil.example/phish"), ex=600)
        with capture_logs() as logs:
            r = await callback(client, authorize(url), binding)
        assert r.status_code == 400 and r.json()["code"] == "invalid_state", r.text
        assert "evil.example" not in r.headers.get("location", "")
        assert any(e["event"] == "security.alert" and e.get("kind") == "redis_record_forged" for e in logs)
    finally:
        await redis.aclose()


async def test_accounts_are_never_linked_by_email(client: AsyncTestClient, idp: HostileOidc) -> None:  # type: ignore[type-arg]
    tenant = await create_tenant(client)
    await configure(client, tenant, idp)
    # The provider asserts the tenant admin's email, verified: still not the admin.
    idp.user = {**idp.user, "sub": "someone-else", "email": tenant.admin_email}
    r = await sign_in(client, tenant)
    assert r.status_code == 401 and r.json()["code"] == "oidc_failed"
    events = (await client.get("/v1/audit?action=auth.login", headers=tenant.admin.headers)).json()["items"]
    assert events[0]["details"]["reason"] == "account_exists"


@pytest.mark.parametrize(
    "disguise",
    [
        lambda e: "".join(chr(ord(c) + 0xFEE0) if c.isalnum() else c for c in e),  # fullwidth
        lambda e: e.upper(),
        lambda e: e.replace("@", "\u200b@"),  # zero-width space
    ],
    ids=["fullwidth", "upper", "zero-width"],
)
async def test_an_email_in_another_unicode_form_is_not_a_second_account(
    client: AsyncTestClient,  # type: ignore[type-arg]
    idp: HostileOidc,
    disguise: Any,
) -> None:
    tenant = await create_tenant(client)
    await configure(client, tenant, idp)
    idp.user = {**idp.user, "sub": "look-alike", "email": disguise(tenant.admin_email)}
    r = await sign_in(client, tenant)
    assert r.status_code == 401 and r.json()["code"] == "oidc_failed", r.text
    users = (await client.get("/v1/users", headers=tenant.admin.headers)).json()["items"]
    assert [u["email"] for u in users] == [tenant.admin_email]


async def test_unverified_email_domain_rules_and_disabled_users(
    client: AsyncTestClient,  # type: ignore[type-arg]
    idp: HostileOidc,
) -> None:
    tenant = await create_tenant(client)
    await configure(client, tenant, idp, allowed_domains=["example.test"])
    idp.user = {**idp.user, "sub": "bob", "email": "bob@other.test"}
    r = await sign_in(client, tenant)
    assert r.status_code == 401
    idp.user = {**idp.user, "sub": "carol", "email": "carol@example.test", "email_verified": False}
    assert (await sign_in(client, tenant)).status_code == 401
    reasons = [
        e["details"].get("reason")
        for e in (await client.get("/v1/audit?action=auth.login", headers=tenant.admin.headers)).json()[
            "items"
        ]
    ]
    assert reasons[:2] == ["email_unverified", "domain_not_allowed"]

    # A user who signed in, then was disabled: their session ends and they cannot sign in again.
    idp.user = {**idp.user, "sub": "dave", "email": "dave@example.test", "email_verified": True}
    first = await sign_in(client, tenant)
    cookie = {"Cookie": f"{SESSION}={cookie_of(first, SESSION)[0]}"}
    dave = (await client.get("/v1/me", headers=cookie)).json()
    r = await client.patch(
        f"/v1/users/{dave['user_id']}", json={"disabled": True}, headers=tenant.admin.headers
    )
    assert r.status_code == 200
    assert (await client.get("/v1/me", headers=cookie)).status_code == 401
    assert (await sign_in(client, tenant)).status_code == 401


async def test_provider_configuration_is_admin_only_and_tenant_scoped(
    client: AsyncTestClient,  # type: ignore[type-arg]
    idp: HostileOidc,
) -> None:
    tenant = await create_tenant(client)
    other = await create_tenant(client)
    out = await configure(client, tenant, idp)
    assert out["callback_url"].endswith("/v1/auth/oidc/acme-idp/callback")
    assert f"tenant={tenant.slug}" in out["login_url"]
    _, manager = await create_user(client, tenant, "manager")
    assert (await client.get("/v1/identity-providers", headers=manager.headers)).status_code == 403
    assert (
        await client.get("/v1/identity-providers/acme-idp", headers=other.admin.headers)
    ).status_code == 404
    # Another tenant's users cannot sign in through this tenant's provider by naming their own tenant.
    r = await client.get(
        "/v1/auth/oidc/acme-idp/login", params={"tenant": other.slug}, follow_redirects=False
    )
    assert r.status_code == 404
    google = await client.put(
        "/v1/identity-providers/google",
        json={"client_id": "x.apps.googleusercontent.com"},
        headers=tenant.admin.headers,
    )
    assert google.status_code == 200 and google.json()["issuer"] == "https://accounts.google.com"
    assert (
        await client.delete("/v1/identity-providers/google", headers=tenant.admin.headers)
    ).status_code == 204
    bad = await client.put(
        "/v1/identity-providers/Bad%20Name", json={"client_id": "x"}, headers=tenant.admin.headers
    )
    assert bad.status_code == 400


@pytest.mark.parametrize("endpoint", ["/token", "/jwks"])
async def test_provider_redirect_to_an_internal_address_is_not_followed(
    client: AsyncTestClient,  # type: ignore[type-arg]
    idp: HostileOidc,
    endpoint: str,
) -> None:
    """The token endpoint (307: it would re-POST the code and the client secret) or the JWKS redirects."""
    tenant = await create_tenant(client)
    await configure(client, tenant, idp)
    with internal_target() as target:
        idp.redirect[endpoint] = f"{target.url}/latest/meta-data/"
        r = await sign_in(client, tenant)
    assert any(seen.path == endpoint for seen in idp.requests), "the provider was asked"
    assert target.connections == [], "the provider's redirect to the internal address was followed"
    assert r.status_code == 401 and r.json()["code"] == "oidc_failed", r.text


async def test_two_first_logins_of_one_subject_at_once_create_one_user_and_both_sign_in(
    client: AsyncTestClient,  # type: ignore[type-arg]
    racing_client: httpx.AsyncClient,
    idp: HostileOidc,
    test_db: TestDatabase,
    owner_conn: asyncpg.Connection,
) -> None:
    """Two tabs finishing their first sign-in together: both find no account linked yet, the second's insert
    waits for the first's and then collides with it. That was a 500; it is the same user, signed in twice."""
    tenant = await create_tenant(client)
    await configure(client, tenant, idp)
    # Started and finished on one base URL: the callback URL is part of the code's grant.
    flows = [await start(racing_client, tenant) for _ in range(2)]  # type: ignore[arg-type]
    answers = [authorize(url) for url, _ in flows]
    async with audit_head_held(test_db, tenant.id):
        racers = [
            asyncio.ensure_future(callback(racing_client, answer, binding))  # type: ignore[arg-type]
            for answer, (_, binding) in zip(answers, flows, strict=True)
        ]
        # One creator waits for the audit head with its user row written, the other for that row's key.
        await waiting(owner_conn, 2, *racers)
    done = await asyncio.gather(*racers)
    assert [r.status_code for r in done] == [302, 302], [r.text for r in done]
    users = [
        (await client.get("/v1/me", headers={"Cookie": f"{SESSION}={cookie_of(r, SESSION)[0]}"})).json()[
            "user_id"
        ]
        for r in done
    ]
    assert users[0] == users[1]
    count = await owner_conn.fetchval(
        "SELECT count(*) FROM users WHERE tenant_id = $1::uuid AND email = 'alice@example.test'", tenant.id
    )
    assert count == 1
