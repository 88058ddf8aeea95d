"""Rewrapping every stored secret under the newest key: resumable, one row per short transaction.

A rerun after a kill simply continues: rows already under the newest key are skipped. No plaintext
secret exists here at all; only each secret's data key is unwrapped, for one call.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from sqlalchemy import select

from connectors.credentials import CredentialError, CredentialManager
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
    return count


async def rewrap_all(
    db: Database, credentials: CredentialManager, progress: Callable[[int], None]
) -> tuple[int, int]:
    """Rewrap every TOTP secret (and, as they arrive, connection secrets) under the newest key.

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
        for user_id in user_ids:
            try:
                done += await _rewrap_user(db, credentials, tenant_id, user_id)
            except CredentialError:
                failed += 1
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
