"""Delivery to a destination that never answers: the real worker gives up at the deadline and retries, never
hangs on it; a tenant already at its cap of calls is deferred without spending an attempt."""

from __future__ import annotations

import time
import uuid

import asyncpg
import msgspec
import pytest
from litestar.testing import AsyncTestClient

from gateway.connections.wiring import connection_services_for
from gateway.db import Database, create_engine
from gateway.settings import Settings
from gateway.uploads.delivery import DeliverLater
from scanning import samples
from tests.factories import create_tenant
from tests.integration.connections.conftest import RunWorker, create_connection
from tests.integration.connections.test_local_delivery_and_broker import db_exec, state_of, upload

DEADLINE = 1


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return msgspec.structs.replace(
        settings, connectors=msgspec.structs.replace(settings.connectors, timeout=DEADLINE)
    )


async def test_delivery_to_a_tarpit_times_out_retries_and_fails_instead_of_hanging(
    client: AsyncTestClient,  # type: ignore[type-arg]
    settings: Settings,
    run_worker: RunWorker,
    tarpit: int,
    owner_conn: asyncpg.Connection,
) -> None:
    async def attempts() -> int:
        sql = "SELECT delivery_attempts FROM uploads WHERE id = $1::uuid"
        return int(await owner_conn.fetchval(sql, str(created["id"])))

    tenant = await create_tenant(client)
    conn = await create_connection(
        client,
        tenant,
        kind="s3",
        config={"bucket": "tarpit", "region": "us-east-1", "endpoint_url": f"http://127.0.0.1:{tarpit}"},
        secrets={"access_key_id": "AKIDEXAMPLE", "secret_access_key": "not-a-real-secret-0123"},
    )
    created = await upload(
        client, tenant, samples.png_bytes(), "photo.png", "image/png", connection_id=conn["id"]
    )
    started = time.monotonic()
    await run_worker(timeout=30)  # scan, then two delivery attempts (FILEGATE_DELIVERY_MAX_TRIES=2 here)
    assert time.monotonic() - started < 20
    done = await state_of(client, tenant, created["id"])
    assert done["state"] == "delivery_failed" and done["reason"] == "connector_timeout", done
    assert await attempts() == 2

    db = Database(create_engine(settings))
    try:
        wired = connection_services_for(settings, db)
        await db_exec(db, tenant.id, created["id"])  # owed again (as POST .../retry would)
        remote = wired.connections.remote
        held = [remote.acquire(uuid.UUID(tenant.id)) for _ in range(remote.per_tenant)]
        outcome = await wired.delivery.run(uuid.UUID(tenant.id), uuid.UUID(str(created["id"])))
        assert isinstance(outcome, DeliverLater) and outcome.reason == "connector_busy"
        for slot in held:
            slot.release()
    finally:
        await db.dispose()
    again = await state_of(client, tenant, created["id"])
    assert again["state"] == "clean" and await attempts() == 2  # no attempt spent
