"""An exhausted database pool is the service being busy: a prompt 503 with Retry-After, never a 500."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.conftest import TestDatabase
from tests.e2e.conftest import LiveServer, make_tenant, running_gateway

pytestmark = pytest.mark.e2e


@pytest.fixture
def gateway(test_db: TestDatabase, tmp_path: Path) -> Iterator[LiveServer]:
    # One pooled connection and one in overflow; a request waits at most 1 s for one.
    with running_gateway(
        test_db, tmp_path, FILEGATE_DATABASE_POOL_SIZE="1", FILEGATE_DATABASE_POOL_TIMEOUT="1"
    ) as server:
        yield server


async def test_exhausted_database_pool_answers_503_with_retry_after_not_500(
    gateway: LiveServer, owner_conn: asyncpg.Connection
) -> None:
    tenant = make_tenant(gateway)
    headers = {"Authorization": f"Bearer {tenant.access_token}"}
    async with httpx.AsyncClient(base_url=gateway.url, timeout=60) as http:
        # Two requests park on a table lock, each holding one of the pool's two connections.
        lock = owner_conn.transaction()
        await lock.start()
        await owner_conn.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        try:
            parked = [asyncio.ensure_future(http.get("/v1/users", headers=headers)) for _ in range(2)]
            await asyncio.sleep(1.0)
            started = time.monotonic()
            r = await http.get("/v1/users", headers=headers, timeout=40)
            elapsed = time.monotonic() - started
        finally:
            await lock.rollback()
        assert r.status_code == 503, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["code"] == "service_unavailable"
        assert "Traceback" not in r.text
        assert int(r.headers["Retry-After"]) >= 1
        assert elapsed < 5  # FILEGATE_DATABASE_POOL_TIMEOUT, not SQLAlchemy's 30 s default
        # The lock is gone: the parked requests and the next one are answered.
        assert [p.status_code for p in await asyncio.gather(*parked)] == [200, 200]
        assert (await http.get("/v1/users", headers=headers)).status_code == 200
