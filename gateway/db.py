"""Engine, tenant-bound transactions and the request-scoped session.

Every transaction that touches tenant data starts with `set_config('app.tenant_id', …, true)`, the
parameterisable form of `SET LOCAL`, so row-level security sees exactly one tenant and forgets it at commit.
What cannot be rolled back (removing stored bytes) is registered with `after_commit` and runs once the
transaction has committed.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import structlog
from sqlalchemy import bindparam, func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from gateway.settings import Settings

log = structlog.get_logger("filegate.db")


def create_engine(settings: Settings, *, url: str | None = None) -> AsyncEngine:
    target = url or settings.database.url
    if not target:
        raise ValueError("FILEGATE_DATABASE_URL is not set")
    return create_async_engine(
        target,
        pool_size=settings.database.pool_size,
        max_overflow=settings.database.pool_size,
        # Waiting longer than this for a connection answers 503 (gateway/errors.py): a saturated pool
        # sheds load at once instead of stacking requests behind SQLAlchemy's 30 s default.
        pool_timeout=settings.database.pool_timeout,
        # No pre-ping: it costs a round trip on every checkout. A dropped connection fails its statement,
        # SQLAlchemy invalidates it, and the request's retry (or the next request) gets a fresh one.
        pool_recycle=1800,
        # A failed statement's error must never carry its parameters (emails, password and key hashes)
        # into a log line or an exception message.
        hide_parameters=True,
        connect_args={"server_settings": {"application_name": "filegate"}},
    )


class Database:
    """The app's door to PostgreSQL: every session it hands out is bound to one tenant or to none."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.sessionmaker = async_sessionmaker(engine, expire_on_commit=False, autoflush=False)

    @asynccontextmanager
    async def tenant(
        self, tenant_id: uuid.UUID, *, synchronous_commit: bool = True
    ) -> AsyncIterator[AsyncSession]:
        """A transaction that sees only `tenant_id`'s rows; commits on success, rolls back on error.

        `synchronous_commit=False` also sets `synchronous_commit = off` for this transaction only, in the
        same statement as the tenant (one round trip): its commit returns before the WAL reaches the disk,
        for writes whose loss in a crash of the host is harmless (a tus PATCH's offset)."""
        async with self.sessionmaker() as session:
            async with session.begin():
                if synchronous_commit:
                    await bind_tenant(session, tenant_id)
                else:
                    await session.execute(_BIND_TENANT_ASYNC_COMMIT, {"tenant_id": str(tenant_id)})
                yield session
            await _run_after_commit(session)

    async def tenant_for_slug(self, slug: str) -> uuid.UUID | None:
        return await self._lookup("SELECT filegate_tenant_for_slug(:v)", slug)

    async def tenant_for_api_key(self, key_id: uuid.UUID) -> uuid.UUID | None:
        return await self._lookup("SELECT filegate_tenant_for_api_key(:v)", key_id)

    async def tenant_for_refresh_token(self, token_id: uuid.UUID) -> uuid.UUID | None:
        return await self._lookup("SELECT filegate_tenant_for_refresh_token(:v)", token_id)

    async def _lookup(self, sql: str, value: object) -> uuid.UUID | None:
        # SECURITY DEFINER functions that answer one tenant id and nothing else; see the migrations.
        async with self.sessionmaker() as session:
            result = (await session.execute(text(sql), {"v": value})).scalar_one_or_none()
            return result if isinstance(result, uuid.UUID) else (uuid.UUID(str(result)) if result else None)

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()


# Built once: the hot path (every tus PATCH) skips building and compiling it.
_BIND_TENANT_ASYNC_COMMIT = select(
    func.set_config("app.tenant_id", bindparam("tenant_id"), True),
    func.set_config("synchronous_commit", "off", True),
)


Effect = Callable[[], Awaitable[object]]
_AFTER_COMMIT = "filegate.after_commit"


def after_commit(session: AsyncSession, effect: Effect) -> None:
    """Run `effect` once the session's transaction has committed, and never if it rolls back.

    For what cannot be rolled back (removing stored bytes): done before the commit, a rollback would
    leave a row whose file is gone. The boundary that owns the transaction (`Database.tenant`) runs
    them, in order. A failing effect is logged, not raised: the act it follows is already committed.
    """
    session.info.setdefault(_AFTER_COMMIT, []).append(effect)


async def _run_after_commit(session: AsyncSession) -> None:
    effects: list[Effect] = session.info.pop(_AFTER_COMMIT, [])
    for effect in effects:
        try:
            await effect()
        except Exception as exc:
            log.warning("db.after_commit_failed", effect=repr(effect), error=type(exc).__name__)


async def bind_tenant(session: AsyncSession, tenant_id: uuid.UUID) -> None:
    await session.execute(select(func.set_config("app.tenant_id", str(tenant_id), True)))


async def tenant_ids(db: Database) -> list[uuid.UUID]:
    """Every tenant id, for system jobs that then work inside each tenant's own RLS scope."""
    async with db.sessionmaker() as session:
        rows = await session.execute(text("SELECT filegate_tenant_ids()"))
        return [r[0] if isinstance(r[0], uuid.UUID) else uuid.UUID(str(r[0])) for r in rows]
