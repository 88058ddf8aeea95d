"""Two deletes of one identity provider at once: one is done and recorded, the other finds nothing."""

from __future__ import annotations

import asyncio

import asyncpg
import httpx

from tests.conftest import TestDatabase
from tests.factories import create_tenant
from tests.locks import audit_head_held, waiting


async def test_two_deletes_of_an_identity_provider_at_once_record_one_event(
    racing_client: httpx.AsyncClient, owner_conn: asyncpg.Connection, test_db: TestDatabase
) -> None:
    t = await create_tenant(racing_client)  # type: ignore[arg-type]
    put = await racing_client.put(
        "/v1/identity-providers/google",
        json={"client_id": "x.apps.googleusercontent.com"},
        headers=t.admin.headers,
    )
    assert put.status_code == 200, put.text
    async with audit_head_held(test_db, t.id):
        deletes = [
            asyncio.ensure_future(
                racing_client.delete("/v1/identity-providers/google", headers=t.admin.headers)
            )
            for _ in range(2)
        ]
        await waiting(owner_conn, 2, *deletes)
    answers = await asyncio.wait_for(asyncio.gather(*deletes), 30)
    assert sorted(r.status_code for r in answers) == [204, 404], [r.text for r in answers]
    events = await racing_client.get(
        "/v1/audit", params={"action": "identity_provider.delete"}, headers=t.admin.headers
    )
    assert len(events.json()["items"]) == 1
