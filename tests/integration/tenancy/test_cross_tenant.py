"""A valid token of tenant A against every `{id}` route of tenant B answers 404, as for a missing id."""

from __future__ import annotations

import re
import uuid

from litestar import Litestar

from tests.factories import create_api_key, create_tenant, create_user

BODIES = {"PATCH": {"role": "user"}, "PUT": {}, "POST": {}}
TUS = {"Tus-Resumable": "1.0.0"}
# Well-formed bodies where a route needs one, so that only the id decides.
ROUTE_BODIES = {
    "/v1/connections/{connection_id:uuid}": {"name": "taken-over"},
    "/v1/connections/{connection_id:uuid}/instagram/media": {"upload_id": str(uuid.uuid4())},
}


def id_routes(app: Litestar) -> list[tuple[str, str]]:
    """Every (method, path template) of the app with a path parameter."""
    out = []
    for route in app.routes:
        # Resources named by id; name-keyed routes (identity providers) address the caller's own tenant.
        if ":uuid}" not in route.path or not route.path.startswith("/v1/"):
            continue
        for method in sorted(getattr(route, "methods", set()) - {"OPTIONS", "HEAD"}):
            out.append((method, route.path))
    return out


def fill(path: str, ids: dict[str, str]) -> str:
    return re.sub(r"\{(\w+):\w+\}", lambda m: ids[m.group(1)], path)


async def test_every_id_route_hides_other_tenants_resources(client) -> None:
    a = await create_tenant(client)
    b = await create_tenant(client)
    b_user, b_session = await create_user(client, b, "manager")
    b_key = await create_api_key(client, b.admin, ["users.read"])
    upload = await client.post(
        "/v1/uploads", content=b"hello", headers={**b.admin.headers, "Content-Type": "text/plain"}
    )
    tus = await client.post("/v1/tus", headers={**b.admin.headers, **TUS, "Upload-Length": "10"})
    connection = await client.post(
        "/v1/connections",
        json={"name": "b-store", "kind": "local", "config": {"base_path": "b"}},
        headers=b.admin.headers,
    )
    assert upload.status_code == 202
    assert tus.status_code == 201
    assert connection.status_code == 201
    ids = {
        "user_id": b_user["id"],
        "key_id": b_key["id"],
        "upload_id": upload.json()["id"],
        "connection_id": connection.json()["id"],
        "key": "a.txt",
    }
    tus_ids = {**ids, "upload_id": tus.headers["location"].rsplit("/", 1)[1]}

    routes = id_routes(client.app)
    assert {p for _, p in routes} >= {
        "/v1/users/{user_id:uuid}",
        "/v1/api-keys/{key_id:uuid}",
        "/v1/uploads/{upload_id:uuid}",
        "/v1/tus/{upload_id:uuid}",
        "/v1/connections/{connection_id:uuid}",
        "/v1/connections/{connection_id:uuid}/objects/{key:path}",
    }
    for method, template in routes:
        is_tus = template.startswith("/v1/tus/")
        missing = {k: str(uuid.uuid4()) for k in ids} | {"key": "a.txt"}
        for label, values in (("B's", tus_ids if is_tus else ids), ("missing", missing)):
            if is_tus:
                # A well-formed tus request, so that only the id decides.
                headers = {
                    **a.admin.headers,
                    **TUS,
                    "Upload-Offset": "0",
                    "Content-Type": "application/offset+octet-stream",
                }
                r = await client.request(method, fill(template, values), headers=headers, content=b"x")
            else:
                r = await client.request(
                    method,
                    fill(template, values),
                    headers=a.admin.headers,
                    json=ROUTE_BODIES.get(template, BODIES.get(method)),
                )
            assert r.status_code == 404, f"{method} {template} with {label} id: {r.status_code} {r.text}"
            assert r.json()["code"] == "not_found"

    # Nothing of B changed.
    me = await client.get("/v1/me", headers=b_session.headers)
    assert me.status_code == 200
    assert me.json()["role"] == "manager"
    keys = (await client.get("/v1/api-keys", headers=b.admin.headers)).json()["items"]
    assert [k["revoked"] for k in keys if k["id"] == b_key["id"]] == [False]
    kept = await client.get(f"/v1/connections/{ids['connection_id']}", headers=b.admin.headers)
    assert kept.json()["name"] == "b-store"


async def test_api_key_of_tenant_a_sees_only_tenant_a(client) -> None:
    a = await create_tenant(client)
    b = await create_tenant(client)
    key = await create_api_key(client, a.admin, ["users.read"])
    r = await client.get("/v1/users", headers={"Authorization": f"Bearer {key['key']}"})
    assert r.status_code == 200
    emails = {u["email"] for u in r.json()["items"]}
    assert a.admin_email in emails
    assert b.admin_email not in emails
