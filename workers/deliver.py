"""Jobs of delivery: stream a clean upload to its connection; refresh connectors' long-lived tokens."""

from __future__ import annotations

import uuid

from arq import Retry

from gateway.connections.tokens import refresh_tokens
from gateway.jobs import DELIVER_UPLOAD
from gateway.uploads.delivery import Delivered, DeliverLater
from workers.registry import JobContext, task


@task(
    name=DELIVER_UPLOAD,
    # Our own budget (counted in the database) decides; arq's is only a backstop.
    max_tries=lambda s: s.connectors.delivery_max_tries + 2,
    timeout=lambda s: s.scanning.job_timeout,
)
async def deliver_upload(ctx: JobContext, tenant_id: str, upload_id: str) -> str | None:
    """Deliver one clean upload to its connection; a throttled or unreachable destination defers the job."""
    outcome = await ctx.services.delivery.run(
        uuid.UUID(tenant_id), uuid.UUID(upload_id), request_id=ctx.job_id
    )
    match outcome:
        case DeliverLater(defer=defer):
            raise Retry(defer=defer)
        case Delivered(state=state):
            return state
    return None


@task(name="refresh_connector_tokens", max_tries=1, timeout=600)
async def refresh_connector_tokens(ctx: JobContext) -> int:
    """Refresh long-lived connector tokens (Instagram) before they expire."""
    return await refresh_tokens(
        ctx.db, ctx.services.connections, refresh_days=ctx.settings.connectors.token_refresh_days
    )
