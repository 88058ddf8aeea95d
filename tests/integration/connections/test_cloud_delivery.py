"""Delivery through the API and the real worker to Azure Blob (Azurite) and SharePoint (the Graph fake):
clean → delivered with the bytes at `<tenant>/<base>/<path>/<filename>`, and a failing destination gives
`delivery_failed`, after which the retry endpoint delivers."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from gateway.settings import Settings
from scanning import samples
from tests.azurite import ACCOUNT_KEY, Container
from tests.factories import TenantHandle, create_tenant
from tests.fakes.sharepoint import FakeCA, FakeSharePoint
from tests.integration.connections.conftest import RunWorker

SP_TENANT = str(uuid.uuid4())
SP_CLIENT = str(uuid.uuid4())
SP_HOST = "contoso.sharepoint.com"


async def deliver_png(
    client: AsyncTestClient,  # type: ignore[type-arg]
    tenant: TenantHandle,
    connection_id: str,
    run_worker: RunWorker,
    path: str = "in/2026",
) -> tuple[str, dict[str, Any]]:
    r = await client.post(
        "/v1/uploads",
        params={"connection_id": connection_id, "path": path},
        content=samples.png_bytes(),
        headers={
            **tenant.admin.headers,
            "Content-Type": "image/png",
            "Content-Disposition": 'attachment; filename="photo.png"',
        },
    )
    assert r.status_code == 202, r.text
    upload_id = r.json()["id"]
    await run_worker()
    state = (await client.get(f"/v1/uploads/{upload_id}", headers=tenant.admin.headers)).json()
    return upload_id, state


async def test_azure_blob_delivery_failure_and_retry(
    client: AsyncTestClient,  # type: ignore[type-arg]
    azure_container: Container,
    run_worker: RunWorker,
) -> None:
    tenant = await create_tenant(client)
    missing = f"fg-missing-{uuid.uuid4().hex[:12]}"
    r = await client.post(
        "/v1/connections",
        json={
            "name": "azure",
            "kind": "azure_blob",
            "config": {
                "account_url": azure_container.azurite.account_url,
                "container": missing,
                "prefix": "media",
            },
            "secrets": {"account_key": ACCOUNT_KEY},
        },
        headers=tenant.admin.headers,
    )
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    # The container does not exist: refused for good, the clean file kept.
    upload_id, state = await deliver_png(client, tenant, cid, run_worker)
    assert state["state"] == "delivery_failed" and state["reason"] == "connector_rejected", state

    # The admin points the connection at the right container; the retry delivers.
    r = await client.patch(
        f"/v1/connections/{cid}",
        json={
            "config": {
                "account_url": azure_container.azurite.account_url,
                "container": azure_container.name,
                "prefix": "media",
            }
        },
        headers=tenant.admin.headers,
    )
    assert r.status_code == 200, r.text
    assert (
        await client.post(f"/v1/uploads/{upload_id}/retry", headers=tenant.admin.headers)
    ).status_code == 202
    await run_worker()
    state = (await client.get(f"/v1/uploads/{upload_id}", headers=tenant.admin.headers)).json()
    assert state["state"] == "delivered", state
    key = f"{tenant.id}/media/in/2026/photo.png"
    assert await azure_container.blob_names() == [key]
    blob = await azure_container.client.get_blob_client(key).download_blob()
    assert hashlib.sha256(await blob.readall()).hexdigest() == state["sha256"]
    listed = await client.get(
        f"/v1/connections/{cid}/objects", params={"prefix": "in/"}, headers=tenant.admin.headers
    )
    assert [i["key"] for i in listed.json()["items"]] == ["in/2026/photo.png"]


@pytest.fixture(scope="module")
def sharepoint_ca(tmp_path_factory: pytest.TempPathFactory) -> FakeCA:
    return FakeCA(tmp_path_factory.mktemp("sp-delivery-tls"))


@pytest.fixture
def sharepoint(sharepoint_ca: FakeCA) -> Iterator[tuple[FakeSharePoint, str]]:
    secret = f"fg-sp-secret-{secrets.token_urlsafe(24)}"
    fake = FakeSharePoint(sharepoint_ca, tenant_id=SP_TENANT, client_id=SP_CLIENT)
    fake.register_secret(secret)
    fake.add_site(SP_HOST, "/sites/team", drives=("Documents",))
    with fake.running():
        yield fake, secret


@pytest.fixture
def settings(settings: Settings, sharepoint: tuple[FakeSharePoint, str]) -> Settings:
    fake, _ = sharepoint
    return msgspec.structs.replace(
        settings,
        connectors=msgspec.structs.replace(
            settings.connectors, login_url=fake.base, graph_url=fake.base, ca_bundle=str(fake.ca.ca_path)
        ),
    )


async def test_sharepoint_delivery_failure_and_retry(
    client: AsyncTestClient,  # type: ignore[type-arg]
    sharepoint: tuple[FakeSharePoint, str],
    run_worker: RunWorker,
) -> None:
    fake, secret = sharepoint
    tenant = await create_tenant(client)
    wrong = "wrong-" + secret[::-1]
    r = await client.post(
        "/v1/connections",
        json={
            "name": "sharepoint",
            "kind": "sharepoint",
            "config": {
                "site_url": f"https://{SP_HOST}/sites/team",
                "drive": "Documents",
                "folder": "Uploads",
            },
            "secrets": {"tenant_id": SP_TENANT, "client_id": SP_CLIENT, "client_secret": wrong},
        },
        headers=tenant.admin.headers,
    )
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    test = (await client.post(f"/v1/connections/{cid}/test", headers=tenant.admin.headers)).json()
    assert test["ok"] is False and wrong not in test["detail"]

    upload_id, state = await deliver_png(client, tenant, cid, run_worker)
    assert state["state"] == "delivery_failed" and state["reason"] == "connector_auth_failed", state

    r = await client.patch(
        f"/v1/connections/{cid}",
        json={"secrets": {"tenant_id": SP_TENANT, "client_id": SP_CLIENT, "client_secret": secret}},
        headers=tenant.admin.headers,
    )
    assert r.status_code == 200
    assert (await client.post(f"/v1/connections/{cid}/test", headers=tenant.admin.headers)).json()[
        "ok"
    ] is True
    assert (
        await client.post(f"/v1/uploads/{upload_id}/retry", headers=tenant.admin.headers)
    ).status_code == 202
    await run_worker()
    state = (await client.get(f"/v1/uploads/{upload_id}", headers=tenant.admin.headers)).json()
    assert state["state"] == "delivered", state
    stored = fake.file(fake.sites[0].drives["Documents"], f"{tenant.id}/Uploads/in/2026/photo.png")
    assert stored is not None
    assert hashlib.sha256(stored.data).hexdigest() == state["sha256"]
    got = await client.get(f"/v1/connections/{cid}/objects/in/2026/photo.png", headers=tenant.admin.headers)
    assert got.status_code == 200 and hashlib.sha256(got.content).hexdigest() == state["sha256"]
