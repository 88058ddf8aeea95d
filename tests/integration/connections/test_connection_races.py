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


async def test_upload_naming_a_connection_deleted_meanwhile_is_refused_not_a_500(
    racing_client: httpx.AsyncClient, owner_conn: asyncpg.Connection, test_db: TestDatabase
) -> None:
    t = await create_tenant(racing_client)  # type: ignore[arg-type]
    created = await racing_client.post(
        "/v1/connections",
        json={"name": "here", "kind": "local", "config": {"base_path": "here"}},
        headers=t.admin.headers,
    )
    connection_id = created.json()["id"]
    deleter = await asyncpg.connect(test_db.dsn(test_db.owner_url))
    try:
        tx = deleter.transaction()
        await tx.start()
        await deleter.execute("DELETE FROM connections WHERE id = $1::uuid", connection_id)
        upload = asyncio.ensure_future(
            racing_client.post(
                "/v1/uploads",
                params={"connection_id": connection_id},
                content=b"hello",
                headers={**t.admin.headers, "Content-Type": "text/plain"},
            )
        )
        await waiting(owner_conn, 1, upload)  # it waits for the delete's outcome
        await tx.commit()
    finally:
        await deleter.close()
    answer = await asyncio.wait_for(upload, 30)
    assert answer.status_code == 422, answer.text
    assert answer.json()["code"] == "unknown_connection"
