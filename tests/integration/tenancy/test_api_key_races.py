"""Revoking an API key while it is used, or twice at once: no deadlock, one event.

The races are forced: a third connection holds the tenant's audit head (and the key's row) while the racers
line up behind it, then lets them all go at once.
"""

from __future__ import annotations

import asyncio

import asyncpg
import httpx

from tests.conftest import TestDatabase
from tests.factories import bearer, create_api_key, create_tenant
from tests.locks import audit_head_held, waiting

ROUNDS = 3


async def _revokes(client: httpx.AsyncClient, headers: dict[str, str]) -> int:
    r = await client.get("/v1/audit", params={"action": "api_key.revoke"}, headers=headers)
    return len(r.json()["items"])


async def test_two_revokes_at_once_record_one_event(
    racing_client: httpx.AsyncClient, owner_conn: asyncpg.Connection, test_db: TestDatabase
) -> None:
    t = await create_tenant(racing_client)  # type: ignore[arg-type]
    key = await create_api_key(racing_client, t.admin, ["uploads.read"])  # type: ignore[arg-type]
    async with audit_head_held(test_db, t.id):
        revokes = [
            asyncio.ensure_future(racing_client.delete(f"/v1/api-keys/{key['id']}", headers=t.admin.headers))
            for _ in range(2)
        ]
        await waiting(owner_conn, 2, *revokes)
    answers = await asyncio.wait_for(asyncio.gather(*revokes), 30)
    assert [r.status_code for r in answers] == [204, 204], [r.text for r in answers]
    assert await _revokes(racing_client, t.admin.headers) == 1


async def test_revoke_racing_the_keys_use_does_not_deadlock(
    racing_client: httpx.AsyncClient, owner_conn: asyncpg.Connection, test_db: TestDatabase
) -> None:
    t = await create_tenant(racing_client)  # type: ignore[arg-type]
    for _ in range(ROUNDS):
        key = await create_api_key(racing_client, t.admin, ["uploads.read"])  # type: ignore[arg-type]
        async with audit_head_held(test_db, t.id, ("api_keys", key["id"])):
            # The use records itself (the key's row, then an event); the revoke queues for the head first.
            use = asyncio.ensure_future(racing_client.get("/v1/uploads", headers=bearer(key["key"])))
            await waiting(owner_conn, 1, use)
            revoke = asyncio.ensure_future(
                racing_client.delete(f"/v1/api-keys/{key['id']}", headers=t.admin.headers)
            )
            await waiting(owner_conn, 2, use, revoke)
        used, revoked = await asyncio.wait_for(asyncio.gather(use, revoke), 30)
        assert revoked.status_code == 204, revoked.text
        assert used.status_code in (200, 401), used.text
        after = await racing_client.get("/v1/uploads", headers=bearer(key["key"]))
        assert after.status_code == 401
