"""The connections API: create/list/get/patch/delete/test, roles, tenant isolation, validation."""

from __future__ import annotations

import uuid

import pytest
from litestar.testing import AsyncTestClient

from tests.factories import create_tenant, create_user
from tests.integration.connections.conftest import create_connection

S3_SECRET = "S3CRET-value-that-must-never-leak-7f3a9c"


def s3_body(name: str = "bucket", **config: object) -> dict[str, object]:
    return {
        "name": name,
        "kind": "s3",
        "config": {"bucket": "media-bucket", "region": "eu-west-1", **config},
        "secrets": {"access_key_id": "AKIDEXAMPLE", "secret_access_key": S3_SECRET},
    }


async def test_admin_creates_reads_updates_and_deletes_a_connection(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    tenant = await create_tenant(client)
    h = tenant.admin.headers
    r = await client.post("/v1/connections", json=s3_body(), headers=h)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["kind"] == "s3"
    assert created["config"] == {"bucket": "media-bucket", "region": "eu-west-1"}
    assert created["secret_fields"] == ["access_key_id", "secret_access_key"]
    assert "secrets" not in created and S3_SECRET not in r.text and "AKIDEXAMPLE" not in r.text

    listed = (await client.get("/v1/connections", headers=h)).json()
    assert [c["id"] for c in listed["items"]] == [created["id"]]
    got = await client.get(f"/v1/connections/{created['id']}", headers=h)
    assert got.status_code == 200 and got.json()["name"] == "bucket" and S3_SECRET not in got.text

    patched = await client.patch(
        f"/v1/connections/{created['id']}",
        json={"name": "renamed", "config": {"bucket": "other-bucket", "region": "eu-west-1", "prefix": "in"}},
        headers=h,
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["config"]["prefix"] == "in" and patched.json()["name"] == "renamed"

    rotated = await client.patch(
        f"/v1/connections/{created['id']}",
        json={"secrets": {"access_key_id": "AKIDEXAMPLE", "secret_access_key": "a-new-secret-value"}},
        headers=h,
    )
    assert rotated.status_code == 200 and "a-new-secret-value" not in rotated.text

    audit = (await client.get("/v1/audit?action=connection.update", headers=h)).json()["items"]
    details = [e["details"] for e in audit]
    # The rotation names the field that changed (not the unchanged key id), never a value.
    assert {"secret_fields": ["secret_access_key"]} in details
    assert any(d.get("config_fields") == ["bucket", "prefix"] for d in details)
    everything = (await client.get("/v1/audit/export", headers=h)).text
    assert S3_SECRET not in everything and "a-new-secret-value" not in everything

    assert (await client.delete(f"/v1/connections/{created['id']}", headers=h)).status_code == 204
    assert (await client.get(f"/v1/connections/{created['id']}", headers=h)).status_code == 404


async def test_roles_per_the_matrix(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    tenant = await create_tenant(client)
    conn = await create_connection(client, tenant)
    _, manager = await create_user(client, tenant, "manager")
    _, user = await create_user(client, tenant, "user")
    _, viewer = await create_user(client, tenant, "viewer")
    cid = conn["id"]
    for session in (manager, user):
        assert (await client.get(f"/v1/connections/{cid}", headers=session.headers)).status_code == 200
        assert (
            await client.post("/v1/connections", json=s3_body(), headers=session.headers)
        ).status_code == 403
        r = await client.patch(f"/v1/connections/{cid}", json={"name": "x"}, headers=session.headers)
        assert r.status_code == 403
        assert (await client.delete(f"/v1/connections/{cid}", headers=session.headers)).status_code == 403
        assert (await client.post(f"/v1/connections/{cid}/test", headers=session.headers)).status_code == 403
    assert (await client.get("/v1/connections", headers=viewer.headers)).status_code == 403
    # Viewers still browse objects through the broker (read-only).
    assert (await client.get(f"/v1/connections/{cid}/objects", headers=viewer.headers)).status_code == 200


async def test_another_tenants_connection_is_404_on_every_route(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    owner = await create_tenant(client)
    other = await create_tenant(client)
    cid = (await create_connection(client, owner))["id"]
    h = other.admin.headers
    calls = [
        ("GET", f"/v1/connections/{cid}", None),
        ("PATCH", f"/v1/connections/{cid}", {"name": "stolen"}),
        ("DELETE", f"/v1/connections/{cid}", None),
        ("POST", f"/v1/connections/{cid}/test", None),
        ("GET", f"/v1/connections/{cid}/objects", None),
        ("GET", f"/v1/connections/{cid}/objects/a.txt", None),
        ("DELETE", f"/v1/connections/{cid}/objects/a.txt", None),
        ("POST", f"/v1/connections/{cid}/instagram/media", {"upload_id": str(uuid.uuid4())}),
    ]
    for method, url, body in calls:
        r = await client.request(method, url, json=body, headers=h)
        assert r.status_code == 404, (method, url, r.status_code, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
    listed = (await client.get("/v1/connections", headers=h)).json()
    assert listed["items"] == []
    # And it is untouched.
    assert (await client.get(f"/v1/connections/{cid}", headers=owner.admin.headers)).json()[
        "name"
    ] != "stolen"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"name": "x", "kind": "ftp", "config": {}, "secrets": {}}, "kind"),
        (
            {**s3_body(), "config": {"bucket": "media-bucket", "region": "eu-west-1", "extra": 1}},
            "unknown field",
        ),
        ({**s3_body(), "secrets": {"access_key_id": "a"}}, "secret_access_key"),
        (
            {**s3_body(), "secrets": {"access_key_id": "a", "secret_access_key": "b", "x": "c"}},
            "unknown field",
        ),
        (
            {**s3_body(), "config": {"bucket": "media-bucket", "region": "eu-west-1", "prefix": "../up"}},
            "prefix",
        ),
        ({**s3_body(), "config": {"bucket": "Not_A_Bucket", "region": "eu-west-1"}}, "bucket"),
        (
            {
                "name": "az",
                "kind": "azure_blob",
                "config": {"account_url": "https://acct.blob.core.windows.net", "container": "media"},
                "secrets": {"account_key": "k", "sas_token": "s"},
            },
            "exactly one",
        ),
        ({"name": "loc", "kind": "local", "config": {"base_path": "../../etc"}}, "base_path"),
        ({"name": "", "kind": "local", "config": {"base_path": "x"}}, "name"),
    ],
)
async def test_invalid_connections_are_refused_with_a_clear_problem(
    client: AsyncTestClient,  # type: ignore[type-arg]
    body: dict[str, object],
    fragment: str,
) -> None:
    tenant = await create_tenant(client)
    r = await client.post("/v1/connections", json=body, headers=tenant.admin.headers)
    assert r.status_code == 400, r.text
    problem = r.json()
    assert problem["code"] == "validation_failed"
    assert fragment in r.text
    assert S3_SECRET not in r.text


async def test_private_endpoints_are_refused_unless_the_operator_allows_them(
    client: AsyncTestClient,  # type: ignore[type-arg]
) -> None:
    # This test's settings allow private endpoints (local SeaweedFS/Azurite); build an app that does not.
    from gateway.app import create_app
    from tests.conftest import Settings

    settings: Settings = client.app.state.settings
    import msgspec

    strict = msgspec.structs.replace(
        settings, connectors=msgspec.structs.replace(settings.connectors, allow_private=False)
    )
    async with AsyncTestClient(app=create_app(strict)) as strict_client:
        tenant = await create_tenant(strict_client)
        for url in (
            "http://169.254.169.254",
            "http://127.0.0.1:6379",
            "https://localhost:9000",
            "http://example.com",
        ):
            r = await strict_client.post(
                "/v1/connections", json=s3_body(endpoint_url=url), headers=tenant.admin.headers
            )
            assert r.status_code == 422, (url, r.text)
            assert r.json()["code"] == "connector_rejected"


async def test_duplicate_names_conflict(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    tenant = await create_tenant(client)
    await create_connection(client, tenant, name="same")
    r = await client.post(
        "/v1/connections",
        json={"name": "same", "kind": "local", "config": {"base_path": "b"}},
        headers=tenant.admin.headers,
    )
    assert r.status_code == 409 and r.json()["code"] == "conflict"
