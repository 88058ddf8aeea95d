"""Forcing races: hold a tenant's audit head so racers line up behind it, and see them waiting.

`pg_stat_activity` is read on a connection outside any transaction: inside one, PostgreSQL answers from a
snapshot taken at its first read.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import asyncpg

from tests.conftest import TestDatabase


@contextlib.asynccontextmanager
async def audit_head_held(
    test_db: TestDatabase, tenant_id: str, *rows: tuple[str, str]
) -> AsyncIterator[None]:
    """Hold the tenant's audit head (and the `(table, id)` rows named): every writer of an event (or of those
    rows) waits behind it until the block ends, when all are let go at once."""
    conn = await asyncpg.connect(test_db.dsn(test_db.owner_url))
    try:
        async with conn.transaction():
            await conn.execute("SELECT 1 FROM audit_heads WHERE tenant_id = $1::uuid FOR UPDATE", tenant_id)
            for table, row_id in rows:
                await conn.execute(f"SELECT 1 FROM {table} WHERE id = $1::uuid FOR UPDATE", row_id)
            yield
    finally:
        await conn.close()


async def waiting(owner_conn: asyncpg.Connection, n: int, *tasks: asyncio.Future[object]) -> None:
    """Until `n` sessions of this database wait for a lock (or one of `tasks` ended early: say why)."""
    for _ in range(600):
        for t in tasks:
            if t.done():
                t.result()
        count = await owner_conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock'"
        )
        if count >= n:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{n} sessions never waited for a lock")
