"""Housekeeping of identity data, run by the worker inside one tenant's transaction."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from tenants.models import RefreshToken

# Spent and revoked tokens are kept a while so that reuse of a stolen token is still recognised.
KEEP_AFTER_EXPIRY = timedelta(days=1)


async def purge_expired_refresh_tokens(session: AsyncSession, tenant_id: uuid.UUID, now: datetime) -> int:
    result = await session.execute(
        delete(RefreshToken)
        .where(RefreshToken.tenant_id == tenant_id, RefreshToken.expires_at < now - KEEP_AFTER_EXPIRY)
        .returning(RefreshToken.id)
    )
    return len(result.all())
