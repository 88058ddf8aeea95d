"""Brokered object access through a storage endpoint gone hostile: an Azure "storage" that answers every
request with `302 Location: <internal URL>` (cloud metadata, the database, an admin port). The gateway must
not fetch the target and serve it back as the object; the client gets a connector problem instead."""

from __future__ import annotations

from litestar.testing import AsyncTestClient

from tests.azurite import ACCOUNT_KEY
from tests.factories import create_tenant
from tests.fakes.ssrf import SECRET, internal_target, redirector
from tests.integration.connections.conftest import create_connection


async def test_azure_storage_redirect_is_not_followed_by_the_brokered_download(
    client: AsyncTestClient,  # type: ignore[type-arg]
) -> None:
    tenant = await create_tenant(client)
    with internal_target() as target, redirector(f"{target.url}/metadata/identity/oauth2/token") as hostile:
        conn = await create_connection(
            client,
            tenant,
            kind="azure_blob",
            config={"account_url": f"{hostile.url}/devstoreaccount1", "container": "media"},
            secrets={"account_key": ACCOUNT_KEY},
        )
        got = await client.get(
            f"/v1/connections/{conn['id']}/objects/2026/photo.png", headers=tenant.admin.headers
        )
        listed = await client.get(f"/v1/connections/{conn['id']}/objects", headers=tenant.admin.headers)
    assert hostile.requests, "the storage was asked"
    assert target.connections == [], "the gateway followed the storage's redirect to the internal address"
    for r in (got, listed):
        assert SECRET not in r.content
        assert r.headers["content-type"].startswith("application/problem+json"), r.text
        assert r.json()["code"].startswith("connector_"), r.text
