"""Shared fixtures: one migrated database per xdist worker, a fresh app (own Redis prefix) per test.

The machine's real PostgreSQL and Redis are used: FILEGATE_TEST_PG (owner URL of the server, default
postgresql+asyncpg://postgres@127.0.0.1:5432) and FILEGATE_TEST_REDIS (default redis://127.0.0.1:6379/0).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from gateway.app import create_app
from gateway.migrate import upgrade
from gateway.settings import Settings
from tests.azurite import azure_container, azurite_server  # noqa: F401  (shared fixtures)
from tests.clamd import clamd, clamd_url, disposable_clamd, small_clamd  # noqa: F401  (shared fixtures)
from tests.oidc import hostile_oidc, oidc_provider  # noqa: F401  (shared fixtures)
from tests.s3 import s3_bucket, s3_credentials, s3_server  # noqa: F401  (shared fixtures)
from tests.tarpit import tarpit  # noqa: F401  (shared fixture)

PG = os.environ.get("FILEGATE_TEST_PG", "postgresql+asyncpg://postgres@127.0.0.1:5432")
REDIS = os.environ.get("FILEGATE_TEST_REDIS", "redis://127.0.0.1:6379/0")
APP_ROLE = "filegate_app"
OPERATOR_TOKEN = "operator-token-for-tests-0123456789"


class TestDatabase:
    def __init__(self, name: str) -> None:
        self.name = name
        base = PG.rsplit("/", 1)[0] if PG.count("/") > 2 else PG
        self.owner_url = f"{base}/{name}"
        host_part = base.split("@", 1)[1]
        self.app_url = f"postgresql+asyncpg://{APP_ROLE}@{host_part}/{name}"

    def dsn(self, url: str) -> str:
        return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def _recreate(db: TestDatabase) -> None:
    admin = await asyncpg.connect(db.dsn(db.owner_url.rsplit("/", 1)[0] + "/postgres"))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{db.name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{db.name}"')
    finally:
        await admin.close()


async def _drop(db: TestDatabase) -> None:
    admin = await asyncpg.connect(db.dsn(db.owner_url.rsplit("/", 1)[0] + "/postgres"))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{db.name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="session")
def test_db(worker_id: str) -> Iterator[TestDatabase]:
    """A database for this xdist worker of this session, built by the real Alembic migrations."""
    # Unique per session too: two test runs on one machine must not drop each other's database.
    db = TestDatabase(f"filegate_test_{worker_id}_{uuid.uuid4().hex[:8]}")
    asyncio.run(_recreate(db))
    upgrade(db.owner_url, APP_ROLE)
    yield db
    asyncio.run(_drop(db))


@pytest.fixture
def settings(test_db: TestDatabase, tmp_path: Path) -> Settings:
    env = {
        "FILEGATE_DATABASE_URL": test_db.app_url,
        "FILEGATE_MIGRATE_DATABASE_URL": test_db.owner_url,
        "FILEGATE_REDIS_URL": REDIS,
        # Every test gets its own Redis namespace: rate limits, lockouts and revocations never leak.
        "FILEGATE_REDIS_KEY_PREFIX": f"fgtest:{uuid.uuid4().hex}:",
        "FILEGATE_DATA_DIR": str(tmp_path / "var"),
        "FILEGATE_OPERATOR_TOKEN": OPERATOR_TOKEN,
        "FILEGATE_DATABASE_POOL_SIZE": "4",
    }
    return Settings.from_env(env)


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[AsyncTestClient]:  # type: ignore[type-arg]
    async with AsyncTestClient(app=create_app(settings)) as c:
        yield c


@pytest.fixture
async def racing_app(settings: Settings) -> AsyncIterator[Litestar]:
    """The app with its lifespan running on this test's event loop (its services in `app.state`)."""
    app = create_app(settings)
    started, stop = asyncio.Event(), asyncio.Event()

    async def serve() -> None:
        # The lifespan's task group must be entered and left by one task; fixtures set up and tear down
        # in different ones.
        async with app.lifespan():
            started.set()
            await stop.wait()

    server = asyncio.create_task(serve())
    await asyncio.wait([server, asyncio.create_task(started.wait())], return_when=asyncio.FIRST_COMPLETED)
    if server.done():
        server.result()  # the lifespan failed: say why
    try:
        yield app
    finally:
        stop.set()
        await server


@pytest.fixture
async def racing_client(racing_app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    """A client whose requests really run at the same time: the app serves them on this event loop
    (`AsyncTestClient` hands one request at a time to the app), on real database connections."""
    transport = httpx.ASGITransport(app=racing_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


@pytest.fixture
async def owner_conn(test_db: TestDatabase) -> AsyncIterator[asyncpg.Connection]:
    """A superuser connection, for tests that play the attacker with direct database access."""
    conn = await asyncpg.connect(test_db.dsn(test_db.owner_url))
    yield conn
    await conn.close()


@pytest.fixture
async def app_conn(test_db: TestDatabase) -> AsyncIterator[asyncpg.Connection]:
    """A raw connection as the app role, exactly as the gateway connects."""
    conn = await asyncpg.connect(test_db.dsn(test_db.app_url))
    yield conn
    await conn.close()
