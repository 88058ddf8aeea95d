"""Helpers for migrations that add tenant tables: row-level security and the app role's grants."""

from __future__ import annotations

import re

from alembic import context, op

TENANT_EXPR = "NULLIF(current_setting('app.tenant_id', true), '')::uuid"


def app_role() -> str:
    role = str(context.config.attributes.get("app_role", "filegate_app"))
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", role):
        raise ValueError("app role name must be a plain lower-case identifier")
    return role


def isolate(table: str) -> None:
    """ENABLE + FORCE row-level security on `table`, visible and writable only for the session's tenant."""
    op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
    op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
    op.execute(
        f"CREATE POLICY tenant_isolation ON {table} "
        f"USING (tenant_id = {TENANT_EXPR}) WITH CHECK (tenant_id = {TENANT_EXPR})"
    )


def grant(table: str, privileges: str = "SELECT, INSERT, UPDATE, DELETE") -> None:
    op.execute(f"GRANT {privileges} ON {table} TO {app_role()}")
