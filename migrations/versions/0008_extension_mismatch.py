"""Policy: what a name with an active extension on content of another type gets.

Revision ID: 0008_extension_mismatch
Revises: 0007_revocation
Create Date: 2026-12-02

`extension_mismatch_action` is `rename` (append the detected type's extension) or `reject`. Existing tenants
get `rename`: their users' uploads keep flowing, and no text is released any more under a name that runs
when opened. The table's row-level security and grants (0002, 0005) cover the new column.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0008_extension_mismatch'
down_revision: str | None = '0007_revocation'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        'tenant_policies',
        sa.Column(
            'extension_mismatch_action', sa.String(length=16), server_default=sa.text("'rename'"), nullable=False
        ),
    )
    op.create_check_constraint(
        'ck_tenant_policies_extension_mismatch_action',
        'tenant_policies',
        "extension_mismatch_action IN ('reject', 'rename')",
    )


def downgrade() -> None:
    op.drop_constraint('ck_tenant_policies_extension_mismatch_action', 'tenant_policies', type_='check')
    op.drop_column('tenant_policies', 'extension_mismatch_action')
