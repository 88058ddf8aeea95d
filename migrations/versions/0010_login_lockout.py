"""account lockout held by the database

Revision ID: 0010_login_lockout
Revises: 0009_normalize_emails
Create Date: 2026-12-02

The consecutive failed logins of an account and its lock lived only in Redis, so a Redis restart, a
failover, an eviction or a deleted key unlocked every account. `login_lockouts` holds them instead, one
row per tenant and account hash (the hash of tenant slug and normalized email; no address is stored, and
unknown emails get rows like known ones). The worker's maintenance deletes rows that no longer count.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from migrations.rls import grant, isolate

revision: str = '0010_login_lockout'
down_revision: str | None = '0009_normalize_emails'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('login_lockouts',
    sa.Column('account', sa.String(length=64), nullable=False),
    sa.Column('failures', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('locked_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('tenant_id', sa.UUID(), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_login_lockouts_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('tenant_id', 'account', name=op.f('pk_login_lockouts'))
    )
    op.create_index(op.f('ix_login_lockouts_tenant_id'), 'login_lockouts', ['tenant_id'], unique=False)
    isolate("login_lockouts")
    grant("login_lockouts")


def downgrade() -> None:
    op.drop_index(op.f('ix_login_lockouts_tenant_id'), table_name='login_lockouts')
    op.drop_table('login_lockouts')
