"""Viewer and User against every Admin route: 403 `forbidden`, and each denial is audited."""

from __future__ import annotations

import pytest

from tenants.models import Role
from tenants.permissions import MATRIX, Permission, Reach, grants
from tests.factories import create_api_key, create_tenant, create_user

POLICY = {"max_file_size": 1000}


def admin_routes(ids: dict[str, str]) -> list[tuple[str, str, dict | None]]:
    return [
        ("GET", "/v1/users", None),
        (
            "POST",
            "/v1/users",
            {"email": "new@example.test", "role": "admin", "password": "Correct-Horse-9-staple"},
        ),
        ("GET", f"/v1/users/{ids['other_user']}", None),
        ("PATCH", f"/v1/users/{ids['other_user']}", {"role": "admin"}),
        ("DELETE", f"/v1/users/{ids['other_user']}", None),
        ("PUT", "/v1/policy", POLICY),
        ("GET", "/v1/audit", None),
        ("GET", "/v1/audit/export", None),
        ("GET", "/v1/audit/verify", None),
        ("GET", "/v1/api-keys", None),
        ("POST", "/v1/api-keys", {"name": "k", "scopes": ["users.read"]}),
        ("DELETE", f"/v1/api-keys/{ids['key']}", None),
    ]


@pytest.mark.parametrize("role", ["viewer", "user"])
async def test_low_roles_are_refused_every_admin_route(client, role: str) -> None:
    t = await create_tenant(client)
    other, _ = await create_user(client, t, "manager")
    key = await create_api_key(client, t.admin, ["users.read"])
    _, session = await create_user(client, t, role)
    routes = admin_routes({"other_user": other["id"], "key": key["id"]})
    for method, path, body in routes:
        r = await client.request(method, path, headers=session.headers, json=body)
        assert r.status_code == 403, f"{role} {method} {path}: {r.status_code} {r.text}"
        assert r.json()["code"] == "forbidden"
    denied = (
        await client.get(
            "/v1/audit", params={"action": "access.denied", "limit": 100}, headers=t.admin.headers
        )
    ).json()["items"]
    assert len(denied) == len(routes)
    assert all(e["outcome"] == "denied" for e in denied)
    # Nothing changed: the other user still a manager, the key alive, the policy untouched.
    assert (await client.get(f"/v1/users/{other['id']}", headers=t.admin.headers)).json()["role"] == "manager"
    assert (await client.get("/v1/policy", headers=t.admin.headers)).json()["max_file_size"] != 1000


async def test_manager_reads_users_but_cannot_change_them(client) -> None:
    t = await create_tenant(client)
    _, manager = await create_user(client, t, "manager")
    assert (await client.get("/v1/users", headers=manager.headers)).status_code == 200
    assert (await client.get(f"/v1/users/{t.admin_id}", headers=manager.headers)).status_code == 200
    r = await client.patch(f"/v1/users/{t.admin_id}", json={"role": "viewer"}, headers=manager.headers)
    assert r.status_code == 403


@pytest.mark.parametrize("role", ["user", "viewer"])
async def test_anyone_reads_themselves(client, role: str) -> None:
    t = await create_tenant(client)
    me, session = await create_user(client, t, role)
    r = await client.get(f"/v1/users/{me['id']}", headers=session.headers)
    assert r.status_code == 200
    assert r.json()["email"] == me["email"]
    assert (await client.get("/v1/policy", headers=session.headers)).status_code == 200


async def test_manager_manages_only_own_api_keys(client) -> None:
    t = await create_tenant(client)
    _, manager = await create_user(client, t, "manager")
    admin_key = await create_api_key(client, t.admin, ["users.read"])
    own = await create_api_key(client, manager, ["users.read"])
    listed = {k["id"] for k in (await client.get("/v1/api-keys", headers=manager.headers)).json()["items"]}
    assert listed == {own["id"]}
    assert (
        await client.delete(f"/v1/api-keys/{admin_key['id']}", headers=manager.headers)
    ).status_code == 404
    assert (await client.delete(f"/v1/api-keys/{own['id']}", headers=manager.headers)).status_code == 204


def test_matrix_is_the_api_contract() -> None:
    """The table in code says what API.md says: spot checks of every role column."""
    assert grants(Role.ADMIN).keys() == set(Permission)
    assert MATRIX[Permission.USERS_WRITE] == {Role.ADMIN: Reach.ANY}
    assert MATRIX[Permission.AUDIT_READ] == {Role.ADMIN: Reach.ANY}
    assert MATRIX[Permission.USERS_READ][Role.MANAGER] is Reach.ANY
    assert MATRIX[Permission.USERS_READ][Role.VIEWER] is Reach.OWN
    assert Role.VIEWER not in MATRIX[Permission.UPLOADS_CREATE]
    assert MATRIX[Permission.UPLOADS_READ][Role.USER] is Reach.OWN
    assert Role.VIEWER not in MATRIX[Permission.API_KEYS_MANAGE]
