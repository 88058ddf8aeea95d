"""identity providers and user identities (OpenID Connect)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23

Two tenant tables: a tenant's providers (client secret sealed) and the link of a user to a provider's
`sub`. Row-level security and the app role's grants come with them.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from migrations.rls import grant, isolate

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('identity_providers',
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('issuer', sa.String(length=512), nullable=False),
    sa.Column('client_id', sa.String(length=512), nullable=False),
    sa.Column('client_secret', sa.Text(), nullable=True),
    sa.Column('allowed_domains', postgresql.ARRAY(sa.Text()), nullable=False),
    sa.Column('default_role', sa.String(length=16), nullable=False),
    sa.Column('create_users', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('redirect_origins', postgresql.ARRAY(sa.Text()), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('tenant_id', sa.UUID(), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_identity_providers_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_identity_providers')),
    sa.UniqueConstraint('tenant_id', 'name', name='uq_identity_providers_tenant_name')
    )
    op.create_index(op.f('ix_identity_providers_tenant_id'), 'identity_providers', ['tenant_id'], unique=False)
    op.create_table('user_identities',
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('user_id', sa.UUID(), nullable=False),
    sa.Column('provider_id', sa.UUID(), nullable=False),
    sa.Column('subject', sa.String(length=255), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('tenant_id', sa.UUID(), nullable=False),
    sa.ForeignKeyConstraint(['provider_id'], ['identity_providers.id'], name=op.f('fk_user_identities_provider_id_identity_providers'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_user_identities_tenant_id_tenants'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_user_identities_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_user_identities')),
    sa.UniqueConstraint('tenant_id', 'provider_id', 'subject', name='uq_user_identities_provider_subject')
    )
    op.create_index(op.f('ix_user_identities_tenant_id'), 'user_identities', ['tenant_id'], unique=False)
    op.create_index(op.f('ix_user_identities_user_id'), 'user_identities', ['user_id'], unique=False)
    for table in ("identity_providers", "user_identities"):
        isolate(table)
        grant(table)


def downgrade() -> None:
    op.drop_table('user_identities')
    op.drop_table('identity_providers')
