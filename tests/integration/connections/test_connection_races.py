"""Two deletes of one connection at once: one is done and recorded, the other finds nothing."""

from __future__ import annotations

import asyncio

import asyncpg
import httpx

from tests.conftest import TestDatabase
from tests.factories import create_tenant
from tests.locks import audit_head_held, waiting


async def test_two_deletes_of_a_connection_at_once_record_one_event(
    racing_client: httpx.AsyncClient, owner_conn: asyncpg.Connection, test_db: TestDatabase
) -> None:
    t = await create_tenant(racing_client)  # type: ignore[arg-type]
    created = await racing_client.post(
        "/v1/connections",
        json={"name": "here", "kind": "local", "config": {"base_path": "here"}},
        headers=t.admin.headers,
    )
    assert created.status_code == 201, created.text
    url = f"/v1/connections/{created.json()['id']}"
    async with audit_head_held(test_db, t.id):
        deletes = [
            asyncio.ensure_future(racing_client.delete(url, headers=t.admin.headers)) for _ in range(2)
        ]
        await waiting(owner_conn, 2, *deletes)
    answers = await asyncio.wait_for(asyncio.gather(*deletes), 30)
    assert sorted(r.status_code for r in answers) == [204, 404], [r.text for r in answers]
    events = await racing_client.get(
        "/v1/audit", params={"action": "connection.delete"}, headers=t.admin.headers
    )
    assert len(events.json()["items"]) == 1
