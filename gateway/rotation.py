"""Rewrapping every stored secret under the newest key: resumable, one row per short transaction.

A rerun after a kill simply continues: rows already under the newest key are skipped. No plaintext
secret exists here at all; only each secret's data key is unwrapped, for one call.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from sqlalchemy import select

from connectors.credentials import CredentialError, CredentialManager
from connectors.models import Connection
from gateway.connections.service import secret_binding
from gateway.db import Database, tenant_ids
from gateway.identity.service import totp_binding
from tenants.models import User


async def pending(db: Database, credentials: CredentialManager) -> int:
    """How many stored secrets are not yet under the newest key."""
    count = 0
    for tenant_id in await tenant_ids(db):
        async with db.tenant(tenant_id) as session:
            rows = await session.execute(
                select(User.totp_secret).where(User.tenant_id == tenant_id, User.totp_secret.is_not(None))
            )
            count += sum(1 for (secret,) in rows if secret and credentials.needs_rewrap(secret))
            sealed = await session.execute(
                select(Connection.secrets).where(Connection.tenant_id == tenant_id)
            )
            count += sum(
                1 for (fields,) in sealed if any(credentials.needs_rewrap(str(v)) for v in fields.values())
            )
    return count


async def rewrap_all(
    db: Database, credentials: CredentialManager, progress: Callable[[int], None]
) -> tuple[int, int]:
    """Rewrap every TOTP secret and every connection secret under the newest key.

    Answers (rewrapped, unreadable): a secret that does not open with this ring is left as it is and
    counted, never a reason to stop the others.
    """
    done = failed = 0
    for tenant_id in await tenant_ids(db):
        async with db.tenant(tenant_id) as session:
            user_ids = list(
                (
                    await session.execute(
                        select(User.id).where(User.tenant_id == tenant_id, User.totp_secret.is_not(None))
                    )
                ).scalars()
            )
            connection_ids = list(
                (
                    await session.execute(select(Connection.id).where(Connection.tenant_id == tenant_id))
                ).scalars()
            )
        for user_id in user_ids:
            try:
                done += await _rewrap_user(db, credentials, tenant_id, user_id)
            except CredentialError:
                failed += 1
            progress(1)
        for connection_id in connection_ids:
            rewrapped, unreadable = await _rewrap_connection(db, credentials, tenant_id, connection_id)
            done += rewrapped
            failed += unreadable
            progress(1)
    return done, failed


async def _rewrap_user(
    db: Database, credentials: CredentialManager, tenant_id: uuid.UUID, user_id: uuid.UUID
) -> int:
    async with db.tenant(tenant_id) as session:
        user = (
            await session.execute(
                select(User).where(User.tenant_id == tenant_id, User.id == user_id).with_for_update()
            )
        ).scalar_one_or_none()
        if user is None or not user.totp_secret or not credentials.needs_rewrap(user.totp_secret):
            return 0
        user.totp_secret = credentials.rewrap(user.totp_secret, totp_binding(tenant_id, user_id))
        return 1


async def _rewrap_connection(
    db: Database, credentials: CredentialManager, tenant_id: uuid.UUID, connection_id: uuid.UUID
) -> tuple[int, int]:
    """Rewrap each field of one connection in one short transaction; answers (rewrapped, unreadable)."""
    done = failed = 0
    async with db.tenant(tenant_id) as session:
        connection = (
            await session.execute(
                select(Connection)
                .where(Connection.tenant_id == tenant_id, Connection.id == connection_id)
                .with_for_update(key_share=True)  # NO KEY UPDATE: uploads naming it need not wait
            )
        ).scalar_one_or_none()
        if connection is None:
            return 0, 0
        fields = dict(connection.secrets)
        for field, value in fields.items():
            if not credentials.needs_rewrap(str(value)):
                continue
            try:
                fields[field] = credentials.rewrap(
                    str(value), secret_binding(tenant_id, connection_id, field)
                )
                done += 1
            except CredentialError:
                failed += 1
        if done:
            connection.secrets = fields
    return done, failed
