"""Housekeeping of identity data, run by the worker inside one tenant's transaction."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import delete, or_
from sqlalchemy.ext.asyncio import AsyncSession

from tenants.models import LoginLockout, RefreshToken

# Spent and revoked tokens are kept a while so that reuse of a stolen token is still recognised.
KEEP_AFTER_EXPIRY = timedelta(days=1)


async def purge_expired_refresh_tokens(session: AsyncSession, tenant_id: uuid.UUID, now: datetime) -> int:
    result = await session.execute(
        delete(RefreshToken)
        .where(RefreshToken.tenant_id == tenant_id, RefreshToken.expires_at < now - KEEP_AFTER_EXPIRY)
        .returning(RefreshToken.id)
    )
    return len(result.all())


async def purge_stale_lockouts(
    session: AsyncSession, tenant_id: uuid.UUID, now: datetime, period: timedelta
) -> int:
    """Delete lockout rows that no longer decide anything: not locked, and last failure a lock period ago
    (the next failure would start a new run at 1 anyway). Every failed login of an unknown email leaves a
    row, so without this the table grows with every guess."""
    result = await session.execute(
        delete(LoginLockout)
        .where(
            LoginLockout.tenant_id == tenant_id,
            or_(LoginLockout.locked_until.is_(None), LoginLockout.locked_until <= now),
            LoginLockout.updated_at <= now - period,
        )
        .returning(LoginLockout.account)
    )
    return len(result.all())
