"""connections and delivery

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23

A tenant table for storage connections (secrets sealed per field), the delivery columns of uploads and
the upload -> connection foreign key (a deleted connection leaves its uploads without a destination).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from migrations.rls import grant, isolate

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('connections',
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('config', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('secrets', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('created_by', sa.UUID(), nullable=True),
    sa.Column('secrets_updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('token_expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('tenant_id', sa.UUID(), nullable=False),
    sa.ForeignKeyConstraint(['created_by'], ['users.id'], name=op.f('fk_connections_created_by_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_connections_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_connections')),
    sa.UniqueConstraint('tenant_id', 'name', name='uq_connections_tenant_name')
    )
    op.create_index(op.f('ix_connections_tenant_id'), 'connections', ['tenant_id'], unique=False)
    op.add_column('uploads', sa.Column('delivery_attempts', sa.Integer(), server_default=sa.text('0'), nullable=False))
    op.add_column('uploads', sa.Column('delivered_ref', sa.String(length=1024), nullable=True))
    op.add_column('uploads', sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=True))
    op.create_foreign_key(op.f('fk_uploads_connection_id_connections'), 'uploads', 'connections', ['connection_id'], ['id'], ondelete='SET NULL')
    isolate("connections")
    grant("connections")


def downgrade() -> None:
    op.drop_constraint(op.f('fk_uploads_connection_id_connections'), 'uploads', type_='foreignkey')
    op.drop_column('uploads', 'delivered_at')
    op.drop_column('uploads', 'delivered_ref')
    op.drop_column('uploads', 'delivery_attempts')
    op.drop_index(op.f('ix_connections_tenant_id'), table_name='connections')
    op.drop_table('connections')
