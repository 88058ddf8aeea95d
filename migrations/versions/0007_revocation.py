"""revocation held by the database

Revision ID: 0007_revocation
Revises: 0006
Create Date: 2026-12-02

Redis only caches revocation; these columns are what it caches, so losing Redis revokes nothing back:
- `users.session_epoch`: raised by disable, role change, password change and erasure; every access token,
  browser session and refresh-token family carries the epoch it was issued under and dies with it.
- `refresh_tokens.session_epoch`: the epoch a family was started under (a refresh token minted while the
  epoch moved on is refused, whatever its `revoked_at` says).
- `api_keys.parent_id`: the key that created this key (NULL when a user did); revoking a key revokes its
  descendants, and a child never outlives its parent.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0007_revocation'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        'users', sa.Column('session_epoch', sa.BigInteger(), server_default=sa.text('0'), nullable=False)
    )
    op.add_column(
        'refresh_tokens',
        sa.Column('session_epoch', sa.BigInteger(), server_default=sa.text('0'), nullable=False),
    )
    op.add_column('api_keys', sa.Column('parent_id', sa.UUID(), nullable=True))
    op.create_foreign_key(
        op.f('fk_api_keys_parent_id_api_keys'), 'api_keys', 'api_keys', ['parent_id'], ['id'], ondelete='CASCADE'
    )
    op.create_index(op.f('ix_api_keys_parent_id'), 'api_keys', ['parent_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_api_keys_parent_id'), table_name='api_keys')
    op.drop_constraint(op.f('fk_api_keys_parent_id_api_keys'), 'api_keys', type_='foreignkey')
    op.drop_column('api_keys', 'parent_id')
    op.drop_column('refresh_tokens', 'session_epoch')
    op.drop_column('users', 'session_epoch')
