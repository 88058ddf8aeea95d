"""Two admins who demote, disable or erase each other at the same moment must leave one admin standing.

The requests run concurrently through the app on real PostgreSQL connections; the last-admin rule has to be
decided under locks, not on a count each request took before the other committed.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import httpx
import pytest
from litestar.testing import AsyncTestClient

from tests.factories import create_tenant, create_user

ROUNDS = 4

ACTS: dict[str, tuple[str, dict[str, Any] | None]] = {
    "demote": ("PATCH", {"role": "manager"}),
    "disable": ("PATCH", {"disabled": True}),
    "erase": ("DELETE", None),
}


async def _active_admins(owner_conn: asyncpg.Connection, tenant_id: str) -> int:
    return int(
        await owner_conn.fetchval(
            "SELECT count(*) FROM users WHERE tenant_id = $1::uuid AND role = 'admin'"
            " AND NOT disabled AND erased_at IS NULL",
            tenant_id,
        )
    )


@pytest.mark.parametrize("act", list(ACTS))
async def test_two_admins_acting_on_each_other_at_once_leave_an_admin(
    client: AsyncTestClient,  # type: ignore[type-arg]
    racing_client: httpx.AsyncClient,
    owner_conn: asyncpg.Connection,
    act: str,
) -> None:
    method, body = ACTS[act]
    for _ in range(ROUNDS):
        t = await create_tenant(client)
        other, other_session = await create_user(client, t, "admin")
        answers = await asyncio.gather(
            racing_client.request(method, f"/v1/users/{other['id']}", json=body, headers=t.admin.headers),
            racing_client.request(
                method, f"/v1/users/{t.admin_id}", json=body, headers=other_session.headers
            ),
        )
        statuses = sorted(r.status_code for r in answers)
        assert await _active_admins(owner_conn, t.id) == 1, [r.text for r in answers]
        # One wins; the other is told the tenant's last admin is protected, or (had its credentials been
        # checked after the winner revoked them) that its token is no longer good. Never a 500.
        assert statuses[0] in (200, 204) and statuses[1] in (401, 409), [r.text for r in answers]
