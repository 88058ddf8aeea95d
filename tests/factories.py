"""Test factories: tenants, users, logins and API keys, all through the public API."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from litestar.testing import AsyncTestClient

from tests.conftest import OPERATOR_TOKEN

PASSWORD = "Tr0ub4dor&3-horse-staple"


@dataclass
class Session:
    access_token: str
    refresh_token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


@dataclass
class TenantHandle:
    id: str
    slug: str
    admin_id: str
    admin_email: str
    admin: Session
    users: dict[str, dict[str, Any]] = field(default_factory=dict)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def login(
    client: AsyncTestClient,
    slug: str,
    email: str,
    password: str = PASSWORD,  # type: ignore[type-arg]
    totp: str | None = None,
) -> Session:
    body: dict[str, Any] = {"tenant": slug, "email": email, "password": password}
    if totp is not None:
        body["totp"] = totp
    r = await client.post("/v1/auth/login", json=body)
    assert r.status_code == 200, r.text
    data = r.json()
    return Session(data["access_token"], data["refresh_token"])


async def create_tenant(client: AsyncTestClient, name: str = "Acme") -> TenantHandle:  # type: ignore[type-arg]
    slug = f"t-{uuid.uuid4().hex[:12]}"
    email = f"admin@{slug}.test"
    r = await client.post(
        "/v1/tenants",
        json={"name": name, "slug": slug, "admin_email": email, "admin_password": PASSWORD},
        headers=bearer(OPERATOR_TOKEN),
    )
    assert r.status_code == 201, r.text
    data = r.json()
    admin = await login(client, slug, email)
    return TenantHandle(
        id=data["id"], slug=slug, admin_id=data["admin_user_id"], admin_email=email, admin=admin
    )


async def create_user(
    client: AsyncTestClient,
    tenant: TenantHandle,
    role: str,  # type: ignore[type-arg]
    *,
    password: str = PASSWORD,
) -> tuple[dict[str, Any], Session]:
    email = f"{role}-{uuid.uuid4().hex[:8]}@{tenant.slug}.test"
    r = await client.post(
        "/v1/users", json={"email": email, "role": role, "password": password}, headers=tenant.admin.headers
    )
    assert r.status_code == 201, r.text
    user = r.json()
    return user, await login(client, tenant.slug, email, password)


async def create_api_key(
    client: AsyncTestClient,
    session: Session,
    scopes: list[str],  # type: ignore[type-arg]
    **extra: Any,
) -> dict[str, Any]:
    r = await client.post(
        "/v1/api-keys", json={"name": "test key", "scopes": scopes, **extra}, headers=session.headers
    )
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]
