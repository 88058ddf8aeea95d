"""The worker's token refresh: a due Instagram token is exchanged, sealed again, and keeps working."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from gateway.connections.tokens import refresh_tokens
from gateway.connections.wiring import connection_services_for
from gateway.db import Database, create_engine
from gateway.settings import Settings
from tests.factories import create_tenant
from tests.fakes.instagram import FakeInstagram, running


@pytest.fixture
def instagram() -> Iterator[FakeInstagram]:
    with running(FakeInstagram(in_progress_polls=0)) as fake:
        yield fake


@pytest.fixture
def settings(settings: Settings, instagram: FakeInstagram) -> Settings:
    return msgspec.structs.replace(
        settings, connectors=msgspec.structs.replace(settings.connectors, instagram_url=instagram.url)
    )


async def test_due_tokens_are_refreshed_and_sealed_again(
    client: AsyncTestClient,  # type: ignore[type-arg]
    settings: Settings,
    instagram: FakeInstagram,
    owner_conn: Any,
) -> None:
    tenant = await create_tenant(client)
    original = instagram.token
    r = await client.post(
        "/v1/connections",
        json={
            "name": "ig",
            "kind": "instagram",
            "config": {"ig_user_id": instagram.ig_user_id},
            "secrets": {"access_token": original},
        },
        headers=tenant.admin.headers,
    )
    cid = r.json()["id"]
    db = Database(create_engine(settings))
    try:
        wired = connection_services_for(settings, db)
        # A token set a moment ago is not refreshed (Instagram refuses tokens younger than a day).
        assert await refresh_tokens(db, wired.connections, refresh_days=7) == 0
        await owner_conn.execute(
            "UPDATE connections SET secrets_updated_at = now() - interval '2 days' WHERE id = $1::uuid", cid
        )
        assert await refresh_tokens(db, wired.connections, refresh_days=7) == 1
        assert instagram.token != original and original in instagram.retired_tokens
        # The new token is sealed in place: the connection works, and it is not due again for weeks.
        test = await client.post(f"/v1/connections/{cid}/test", headers=tenant.admin.headers)
        assert test.json()["ok"] is True, test.text
        expires = await owner_conn.fetchval(
            "SELECT token_expires_at > now() + interval '30 days' FROM connections WHERE id = $1::uuid", cid
        )
        assert expires is True
        assert await refresh_tokens(db, wired.connections, refresh_days=7) == 0
        stored = await owner_conn.fetchval("SELECT secrets::text FROM connections WHERE id = $1::uuid", cid)
        assert instagram.token not in stored and original not in stored
    finally:
        await db.dispose()
