"""stored emails in their one canonical form (NFKC, casefold)

Revision ID: 0009_normalize_emails
Revises: 0008_extension_mismatch
Create Date: 2026-12-02

Emails used to be stored `strip().lower()`; the gateway now stores and compares NFKC + casefold
(`tenants.inputs.normalize_email`), so an address written with fullwidth letters, ligatures or `ß` names
the same account as its plain form. Rows whose stored form differs are rewritten, tenant by tenant under
that tenant's row-level security. Two rows that would collide, and addresses with invisible or control
characters (which the gateway now refuses), are left untouched and counted on stderr by user id, for the
operator to resolve; such a row was only ever reachable by typing its exact characters.

No schema change: data only. The normalisation is copied here, not imported, so this migration keeps
doing what it did when the code moves on.
"""

import sys
import unicodedata
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0009_normalize_emails'
down_revision: str | None = '0008_extension_mismatch'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _canonical(email: str) -> str | None:
    value = email.strip()
    if any(unicodedata.category(c)[0] in "CZ" for c in value):
        return None
    value = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", value).casefold())
    if any(unicodedata.category(c)[0] in "CZ" for c in value) or value.count("@") != 1:
        return None
    return value


def upgrade() -> None:
    bind = op.get_bind()
    tenant_ids = [row[0] for row in bind.execute(sa.text("SELECT filegate_tenant_ids()"))]
    left: list[str] = []
    for tenant_id in tenant_ids:
        # The owner is under FORCE ROW LEVEL SECURITY too: bind each tenant for its own rows.
        bind.execute(sa.text("SELECT set_config('app.tenant_id', :t, true)"), {"t": str(tenant_id)})
        rows = bind.execute(
            sa.text("SELECT id, email FROM users WHERE tenant_id = :t AND email IS NOT NULL ORDER BY created_at, id"),
            {"t": str(tenant_id)},
        ).all()
        taken = {email for _, email in rows}
        for user_id, email in rows:
            canonical = _canonical(email)
            if canonical == email:
                continue
            if canonical is None or canonical in taken:
                left.append(str(user_id))
                continue
            bind.execute(
                sa.text("UPDATE users SET email = :e WHERE tenant_id = :t AND id = :id"),
                {"e": canonical, "t": str(tenant_id), "id": user_id},
            )
            taken.discard(email)
            taken.add(canonical)
    bind.execute(sa.text("SELECT set_config('app.tenant_id', '', true)"))
    if left:
        print(
            f"0009_normalize_emails: {len(left)} user(s) left with a non-canonical email (collision or "
            f"invisible characters), ids: {', '.join(left)}",
            file=sys.stderr,
        )


def downgrade() -> None:
    # The old form was strip().lower() of whatever was sent; the canonical form is one of those.
    pass
