"""Row-level security proves tenant isolation on its own, below any application code."""

from __future__ import annotations

import asyncpg
import pytest

from tests.factories import create_api_key, create_tenant, create_user

TENANT_TABLES = ["users", "api_keys", "refresh_tokens", "tenant_policies", "audit_events", "audit_heads"]


async def _count(conn: asyncpg.Connection, table: str, tenant_id: str | None) -> tuple[int, int]:
    """(rows visible, rows of other tenants visible) in one transaction with the given setting."""
    async with conn.transaction():
        if tenant_id is not None:
            await conn.execute("SELECT set_config('app.tenant_id', $1, true)", tenant_id)
        column = "id" if table == "tenants" else "tenant_id"
        total = await conn.fetchval(f"SELECT count(*) FROM {table}")
        foreign = await conn.fetchval(
            f"SELECT count(*) FROM {table} WHERE {column}::text <> coalesce($1, '')", tenant_id
        )
    return int(total), int(foreign)


async def test_app_role_sees_only_the_tenant_in_its_setting(client, app_conn) -> None:
    a = await create_tenant(client)
    b = await create_tenant(client)
    for t in (a, b):
        await create_user(client, t, "user")
        await create_api_key(client, t.admin, ["users.read"])

    for table in ["tenants", *TENANT_TABLES]:
        seen_a, foreign_a = await _count(app_conn, table, a.id)
        assert seen_a > 0, f"{table}: tenant A sees its own rows"
        assert foreign_a == 0, f"{table}: tenant A must see none of tenant B's rows"
        seen_none, _ = await _count(app_conn, table, None)
        assert seen_none == 0, f"{table}: no tenant setting must see nothing at all"


async def test_app_role_cannot_write_into_another_tenant(client, app_conn) -> None:
    a = await create_tenant(client)
    b = await create_tenant(client)
    async with app_conn.transaction():
        await app_conn.execute("SELECT set_config('app.tenant_id', $1, true)", a.id)
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await app_conn.execute(
                "INSERT INTO users (id, tenant_id, email, role) VALUES (gen_random_uuid(), $1, 'x@y.z', 'admin')",
                b.id,
            )


async def test_app_role_is_not_privileged_and_owns_nothing(app_conn) -> None:
    row = await app_conn.fetchrow("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
    assert row is not None and not row["rolsuper"] and not row["rolbypassrls"]
    owned = await app_conn.fetchval(
        "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tableowner = current_user"
    )
    assert owned == 0
    forced = await app_conn.fetch(
        "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind = 'r' "
        "AND NOT (relrowsecurity AND relforcerowsecurity) AND relname <> 'alembic_version'"
    )
    assert [r["relname"] for r in forced] == []


async def test_app_role_cannot_change_or_delete_audit_rows(client, app_conn) -> None:
    a = await create_tenant(client)
    async with app_conn.transaction():
        await app_conn.execute("SELECT set_config('app.tenant_id', $1, true)", a.id)
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await app_conn.execute("UPDATE audit_events SET action = 'x'")
    async with app_conn.transaction():
        await app_conn.execute("SELECT set_config('app.tenant_id', $1, true)", a.id)
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await app_conn.execute("DELETE FROM audit_events")
