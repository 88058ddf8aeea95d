"""CORS: is an origin listed by any tenant?

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23

A CORS preflight carries no credentials, so the gateway cannot know the tenant; it may only ask whether
some tenant's policy lists the requesting origin. The app role sees one tenant's policy at a time (RLS),
so this SECURITY DEFINER function answers exactly that yes/no and nothing else (never which tenant, never
the list). Comparison ignores case: browsers send scheme and host in lower case, policies may not.
"""

from collections.abc import Sequence

from alembic import op

from migrations.rls import app_role

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SIGNATURE = "origin_is_allowed(p text)"


def upgrade() -> None:
    role = app_role()
    # The function runs as the owner, who is subject to FORCE ROW LEVEL SECURITY too (as in 0002).
    op.execute("CREATE POLICY definer_lookup ON tenant_policies FOR SELECT TO CURRENT_USER USING (true)")
    op.execute(f"""
CREATE FUNCTION {SIGNATURE} RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$ SELECT EXISTS (
  SELECT 1 FROM public.tenant_policies AS tp, unnest(tp.cors_origins) AS o WHERE lower(o) = lower(p)
) $$""")
    op.execute(f"REVOKE ALL ON FUNCTION {SIGNATURE} FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION {SIGNATURE} TO {role}")


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS origin_is_allowed(text)")
    op.execute("DROP POLICY IF EXISTS definer_lookup ON tenant_policies")
