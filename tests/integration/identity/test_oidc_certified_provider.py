"""The gateway against the certified `oidc-provider` (npm): code + PKCE end to end, with the provider's own
login form, a verified and an unverified user, and a tampered code."""

from __future__ import annotations

from urllib.parse import urlsplit

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from gateway.settings import Settings
from tests.factories import create_tenant
from tests.oidc import RunningOidc, login_with_httpx_async

SESSION = "__Host-filegate_session"
BINDING = "__Host-filegate_oidc"
CALLBACK = "http://testserver.local/v1/auth/oidc/corp/callback"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return msgspec.structs.replace(
        settings, connectors=msgspec.structs.replace(settings.connectors, allow_private=True)
    )


def set_cookie(response: object, name: str) -> str:
    for line in response.headers.get_list("set-cookie"):  # type: ignore[attr-defined]
        if line.startswith(f"{name}="):
            return str(line.split(";", 1)[0].split("=", 1)[1])
    raise AssertionError(f"no {name} cookie")


async def test_sign_in_through_the_certified_provider(
    client: AsyncTestClient,  # type: ignore[type-arg]
    oidc_provider: RunningOidc,
) -> None:
    registered = oidc_provider.register_client(CALLBACK)
    tenant = await create_tenant(client)
    r = await client.put(
        "/v1/identity-providers/corp",
        json={
            "issuer": oidc_provider.issuer,
            "client_id": registered.client_id,
            "client_secret": registered.client_secret,
            "create_users": True,
            "default_role": "viewer",
            "allowed_domains": ["example.test"],
        },
        headers=tenant.admin.headers,
    )
    assert r.status_code == 200, r.text
    assert r.json()["callback_url"] == CALLBACK

    async def login(username: str) -> tuple[str, str]:
        start = await client.get(
            "/v1/auth/oidc/corp/login", params={"tenant": tenant.slug}, follow_redirects=False
        )
        assert start.status_code == 302, start.text
        back = await login_with_httpx_async(
            start.headers["location"], username, oidc_provider.users[username].password
        )
        return back, set_cookie(start, BINDING)

    back, binding = await login("alice")
    assert back.startswith(CALLBACK)
    parts = urlsplit(back)
    r = await client.get(
        f"{parts.path}?{parts.query}", headers={"Cookie": f"{BINDING}={binding}"}, follow_redirects=False
    )
    assert r.status_code == 302, r.text
    me = (await client.get("/v1/me", headers={"Cookie": f"{SESSION}={set_cookie(r, SESSION)}"})).json()
    assert me["email"] == oidc_provider.users["alice"].email and me["role"] == "viewer"

    # eve's email is not verified: refused, nobody created.
    back, binding = await login("eve")
    parts = urlsplit(back)
    r = await client.get(
        f"{parts.path}?{parts.query}", headers={"Cookie": f"{BINDING}={binding}"}, follow_redirects=False
    )
    assert r.status_code == 401 and r.json()["code"] == "oidc_failed"

    # A code altered in transit is refused by the provider (invalid_grant), and so by the gateway.
    back, binding = await login("alice")
    parts = urlsplit(back)
    tampered = parts.query.replace("code=", "code=x", 1)
    r = await client.get(
        f"{parts.path}?{tampered}", headers={"Cookie": f"{BINDING}={binding}"}, follow_redirects=False
    )
    assert r.status_code == 401 and r.json()["code"] == "oidc_failed"
    users = (await client.get("/v1/users", headers=tenant.admin.headers)).json()["items"]
    assert sorted(u["role"] for u in users) == ["admin", "viewer"]
