"""Jobs of the upload pipeline: scan, reconcile lost jobs, retention."""

from __future__ import annotations

import uuid

import structlog
from arq import Retry

from gateway.jobs import DELIVER_UPLOAD, SCAN_UPLOAD, job_id
from gateway.uploads.pipeline import Decided, RetryLater, reconcile, retention
from workers.registry import JobContext, task

log = structlog.get_logger("filegate.worker")


@task(
    name=SCAN_UPLOAD,
    # Our own budget (counted in the database, so it survives lost jobs) decides; arq's is only a backstop.
    max_tries=lambda s: s.scanning.max_tries + 2,
    timeout=lambda s: s.scanning.job_timeout,
)
async def scan_upload(ctx: JobContext, tenant_id: str, upload_id: str) -> str | None:
    """Type-check and virus-scan one quarantined upload; a scanner error defers the job (fail closed)."""
    outcome = await ctx.services.pipeline.run(
        uuid.UUID(tenant_id), uuid.UUID(upload_id), request_id=ctx.job_id
    )
    match outcome:
        case RetryLater(defer=defer):
            raise Retry(defer=defer)
        case Decided(state=state, deliver=deliver):
            if deliver:
                # The outbox owes it already; if this enqueue is lost the reconciler queues it.
                await ctx.services.queue.enqueue(
                    DELIVER_UPLOAD, tenant_id, upload_id, job_id=job_id(DELIVER_UPLOAD, upload_id)
                )
            return state
    return None


@task(name="reconcile_uploads", max_tries=1, timeout=300)
async def reconcile_uploads(ctx: JobContext) -> int:
    """Re-enqueue scans the database says are owed but Redis lost."""
    return await reconcile(ctx.db, ctx.services.queue, grace=ctx.settings.scanning.reconcile_grace)


@task(name="upload_retention", max_tries=1, timeout=1800)
async def upload_retention(ctx: JobContext) -> int:
    """Purge infected/rejected content after the tenant's retention; drop expired unfinished uploads."""
    return await retention(ctx.db, ctx.services.store, ctx.services.policy)
