"""row-level security, the app role and its grants, tenant lookups

The app connects as a role that owns no table, is not a superuser and cannot bypass RLS. Every tenant
table has ENABLE + FORCE row-level security on `current_setting('app.tenant_id')`. The only ways to
learn a tenant id without already holding one are three SECURITY DEFINER functions that answer exactly
that (slug -> id, API key id -> id, refresh token id -> id), plus the list of tenant ids for
system jobs, which then visit each tenant under its own RLS.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

import re
from collections.abc import Sequence

from alembic import context, op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TENANT_EXPR = "NULLIF(current_setting('app.tenant_id', true), '')::uuid"
TENANT_TABLES = ["users", "api_keys", "refresh_tokens", "recovery_codes", "tenant_policies",
                 "audit_events", "audit_heads"]
READ_WRITE = ["users", "api_keys", "refresh_tokens", "recovery_codes", "tenant_policies"]


def _app_role() -> str:
    role = str(context.config.attributes.get("app_role", "filegate_app"))
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", role):
        raise ValueError("app role name must be a plain lower-case identifier")
    return role


def upgrade() -> None:
    role = _app_role()
    op.execute(f"""
DO $$
BEGIN
  IF current_user = '{role}' THEN
    RAISE EXCEPTION 'run migrations as the schema owner, not as the app role {role}';
  END IF;
  BEGIN
    CREATE ROLE {role} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
  EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
  END;
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}' AND (rolsuper OR rolbypassrls)) THEN
    RAISE EXCEPTION 'app role {role} must not be a superuser or bypass row-level security';
  END IF;
END $$;
""")
    op.execute(f"GRANT USAGE ON SCHEMA public TO {role}")

    # tenants: a session sees its own tenant's row; the owner (running the lookups below) sees all.
    op.execute("ALTER TABLE tenants ENABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE tenants FORCE ROW LEVEL SECURITY")
    op.execute(f"CREATE POLICY tenant_isolation ON tenants USING (id = {TENANT_EXPR}) WITH CHECK (id = {TENANT_EXPR})")
    op.execute("CREATE POLICY definer_lookup ON tenants FOR SELECT TO CURRENT_USER USING (true)")
    op.execute(f"GRANT SELECT, INSERT ON tenants TO {role}")

    for table in TENANT_TABLES:
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY tenant_isolation ON {table} "
            f"USING (tenant_id = {TENANT_EXPR}) WITH CHECK (tenant_id = {TENANT_EXPR})"
        )
    for table in READ_WRITE:
        op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {role}")
    # Append-only: the app may add and read events, never change or remove one.
    op.execute(f"GRANT SELECT, INSERT ON audit_events TO {role}")
    op.execute(f"GRANT SELECT, INSERT, UPDATE ON audit_heads TO {role}")
    for table in ("api_keys", "refresh_tokens"):
        op.execute(f"CREATE POLICY definer_lookup ON {table} FOR SELECT TO CURRENT_USER USING (true)")

    lookups = {
        "filegate_tenant_for_slug(p text)": "SELECT id FROM public.tenants WHERE slug = p",
        "filegate_tenant_for_api_key(p uuid)": "SELECT tenant_id FROM public.api_keys WHERE id = p",
        "filegate_tenant_for_refresh_token(p uuid)": "SELECT tenant_id FROM public.refresh_tokens WHERE id = p",
    }
    for signature, body in lookups.items():
        op.execute(f"""
CREATE FUNCTION {signature} RETURNS uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$ {body} $$""")
        op.execute(f"REVOKE ALL ON FUNCTION {signature} FROM PUBLIC")
        op.execute(f"GRANT EXECUTE ON FUNCTION {signature} TO {role}")
    # For system jobs (the worker's maintenance) that visit each tenant in turn, each under its own RLS.
    op.execute("""
CREATE FUNCTION filegate_tenant_ids() RETURNS SETOF uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$ SELECT id FROM public.tenants ORDER BY id $$""")
    op.execute("REVOKE ALL ON FUNCTION filegate_tenant_ids() FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION filegate_tenant_ids() TO {role}")


def downgrade() -> None:
    role = _app_role()
    for signature in ("filegate_tenant_ids()", "filegate_tenant_for_slug(text)", "filegate_tenant_for_api_key(uuid)",
                      "filegate_tenant_for_refresh_token(uuid)"):
        op.execute(f"DROP FUNCTION IF EXISTS {signature}")
    for table in ["tenants", *TENANT_TABLES]:
        op.execute(f"DROP POLICY IF EXISTS tenant_isolation ON {table}")
        op.execute(f"DROP POLICY IF EXISTS definer_lookup ON {table}")
        op.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
        op.execute(f"REVOKE ALL ON {table} FROM {role}")
