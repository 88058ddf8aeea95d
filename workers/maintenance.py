"""Periodic housekeeping jobs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import structlog

from gateway.db import tenant_ids
from tenants.maintenance import purge_expired_refresh_tokens, purge_stale_lockouts
from workers.registry import JobContext, task

log = structlog.get_logger("filegate.worker")


@task(name="purge_expired_refresh_tokens", max_tries=3, timeout=600)
async def purge_refresh_tokens(ctx: JobContext) -> int:
    """Delete refresh tokens a day past expiry, tenant by tenant, each under its own RLS scope."""
    now = datetime.now(UTC)
    total = 0
    for tenant_id in await tenant_ids(ctx.db):
        async with ctx.db.tenant(tenant_id) as session:
            total += await purge_expired_refresh_tokens(session, tenant_id, now)
    log.info("worker.purged_refresh_tokens", count=total)
    return total


@task(name="purge_stale_lockouts", max_tries=3, timeout=600)
async def purge_lockouts(ctx: JobContext) -> int:
    """Delete login lockout rows that are neither locked nor counting any more, tenant by tenant."""
    now = datetime.now(UTC)
    period = timedelta(seconds=ctx.settings.auth.lockout_seconds)
    total = 0
    for tenant_id in await tenant_ids(ctx.db):
        async with ctx.db.tenant(tenant_id) as session:
            total += await purge_stale_lockouts(session, tenant_id, now, period)
    log.info("worker.purged_lockouts", count=total)
    return total
