"""Delivery: a clean upload with a `connection_id` is streamed from quarantine to its connection.

`clean` → `delivering` → `delivered`, or `delivery_failed` (the clean file is kept; POST .../retry owes the
delivery again). Every state change is compare-and-set and the outcome, its audit event and the outbox
row's completion commit together. Storage connections get one object at a key that depends only on the
upload (`<path>/<filename>` inside the tenant's root), written by replacing, so a delivery that runs twice
leaves one object. A destination that is throttling or unreachable is retried with backoff; one that
refuses the credentials or the request fails at once.

No transaction is open while the destination works: the upload is claimed in one, delivered, and the outcome
recorded in another. The delivery holds one of the tenant's remote-call slots (a tenant already at its cap
is deferred, without using an attempt) and a deadline between two chunks, so a destination that never
answers costs a retry, never a worker's job slot for good (gateway/connections/remote.py).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog

from connectors.base import Connector, ConnectorError
from gateway.audit import Actor, AuditContext, AuditRecorder, Target
from gateway.connections.publishing import PublishingService
from gateway.connections.remote import ConnectorBusy
from gateway.connections.service import ConnectionService, Opened, SecretsUnreadable
from gateway.db import Database
from gateway.errors import FilegateError, NotFound
from gateway.jobs import DELIVER_UPLOAD
from gateway.settings import ConnectorSettings
from gateway.uploads.destinations import destination_key
from gateway.uploads.models import Upload, UploadState
from gateway.uploads.quarantine import QuarantineStore
from gateway.uploads.repository import OutboxRepository, UploadRepository

log = structlog.get_logger("filegate.delivery")
DELIVERER = Actor("system", "delivery")
MAX_BACKOFF = 600.0


@dataclass(frozen=True, slots=True)
class Delivered:
    state: str | None  # None: someone else had already moved it


@dataclass(frozen=True, slots=True)
class DeliverLater:
    defer: float
    reason: str


DeliveryOutcome = Delivered | DeliverLater


class DeliveryPipeline:
    def __init__(
        self,
        *,
        db: Database,
        store: QuarantineStore,
        connections: ConnectionService,
        publishing: PublishingService,
        audit: AuditRecorder,
        settings: ConnectorSettings,
    ) -> None:
        self.db = db
        self.store = store
        self.connections = connections
        self.publishing = publishing
        self.audit = audit
        self.settings = settings

    async def run(
        self, tenant_id: uuid.UUID, upload_id: uuid.UUID, *, request_id: str | None = None
    ) -> DeliveryOutcome:
        try:
            slot = self.connections.remote.acquire(tenant_id)
        except ConnectorBusy:
            # The tenant's other deliveries (or requests) hold every slot: wait a little, costing no attempt.
            return DeliverLater(defer=self.settings.delivery_retry_base, reason="connector_busy")
        try:
            with slot.on_own_threads():
                return await self._run(tenant_id, upload_id, AuditContext(request_id=request_id))
        finally:
            slot.release()

    async def _run(self, tenant_id: uuid.UUID, upload_id: uuid.UUID, ctx: AuditContext) -> DeliveryOutcome:
        async with self.db.tenant(tenant_id) as session:
            upload = await UploadRepository(session, tenant_id).transition(
                upload_id,
                [UploadState.CLEAN.value, UploadState.DELIVERING.value],
                UploadState.DELIVERING.value,
                delivery_attempts=Upload.delivery_attempts + 1,
            )
            if upload is None or upload.connection_id is None:
                await OutboxRepository(session, tenant_id).done(upload_id, DELIVER_UPLOAD, datetime.now(UTC))
                return Delivered(None)
        try:
            opened = await self.connections.open_by_id(tenant_id, upload.connection_id)
        except NotFound:
            return await self._finish(tenant_id, upload, ctx, failure="connection_missing")
        except SecretsUnreadable:
            return await self._finish(tenant_id, upload, ctx, failure="secrets_unreadable")
        except ConnectorError as exc:
            return await self._failed(tenant_id, upload, ctx, exc)
        try:
            ref = await self._deliver(tenant_id, upload, opened)
        except ConnectorError as exc:
            return await self._failed(tenant_id, upload, ctx, exc)
        except FilegateError as exc:  # e.g. media links not configured
            return await self._finish(tenant_id, upload, ctx, failure=exc.code)
        finally:
            await opened.aclose()
        return await self._finish(tenant_id, upload, ctx, ref=ref)

    async def _failed(
        self, tenant_id: uuid.UUID, upload: Upload, ctx: AuditContext, exc: ConnectorError
    ) -> DeliveryOutcome:
        """A throttled, unreachable or silent destination is retried with backoff; anything else fails."""
        if exc.retryable and upload.delivery_attempts < self.settings.delivery_max_tries:
            defer = exc.retry_after or min(
                self.settings.delivery_retry_base * 2 ** (upload.delivery_attempts - 1), MAX_BACKOFF
            )
            log.warning(
                "delivery.retry",
                upload_id=str(upload.id),
                reason=exc.code,
                attempt=upload.delivery_attempts,
                defer_s=defer,
            )
            return DeliverLater(defer=defer, reason=exc.code)
        return await self._finish(tenant_id, upload, ctx, failure=exc.code)

    async def _deliver(self, tenant_id: uuid.UUID, upload: Upload, opened: Opened) -> str:
        if isinstance(opened.connector, Connector):
            relative = destination_key(upload.path, upload.filename)
            # A deadline between two chunks the destination takes: a large file may take its time.
            async with self.connections.remote.deadline() as deadline:
                await opened.connector.put(
                    opened.root.key(relative),
                    deadline.paced(self.store.read(upload.storage_key)),
                    size=upload.size,
                    content_type=upload.detected_type,
                )
            return relative
        published = await self.publishing.publish(opened, upload, None)
        return published.media_id

    async def _finish(
        self,
        tenant_id: uuid.UUID,
        upload: Upload,
        ctx: AuditContext,
        *,
        ref: str | None = None,
        failure: str | None = None,
    ) -> Delivered:
        now = datetime.now(UTC)
        state = UploadState.DELIVERY_FAILED if failure else UploadState.DELIVERED
        values = (
            {"reason": failure} if failure else {"delivered_ref": ref, "delivered_at": now, "reason": None}
        )
        async with self.db.tenant(tenant_id) as session:
            moved = await UploadRepository(session, tenant_id).transition(
                upload.id, [UploadState.DELIVERING.value], state.value, **values
            )
            if moved is None:
                return Delivered(None)
            await OutboxRepository(session, tenant_id).done(upload.id, DELIVER_UPLOAD, now)
            await self.audit.record(
                session,
                tenant_id,
                ctx,
                action="upload.deliver",
                outcome="failure" if failure else "success",
                actor=DELIVERER,
                target=Target("upload", str(upload.id)),
                details={"connection_id": str(upload.connection_id), "reason": failure, "ref": ref},
            )
        log.info("upload.delivery", upload_id=str(upload.id), state=state.value, reason=failure)
        return Delivered(state.value)
