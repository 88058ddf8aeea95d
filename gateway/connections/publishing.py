"""Publishing a clean upload through a publishing connection (Instagram), and the signed link it fetches.

The Graph API fetches the media itself, so the gateway hands it a signed, short-lived URL for that one
upload (gateway/connections/media.py). The link serves bytes only while the upload is released.

A publish waits for Instagram for up to FILEGATE_INSTAGRAM_MAX_WAIT seconds, so it runs with no transaction
open, under the tenant's slot, with that wait plus FILEGATE_CONNECTOR_TIMEOUT as its deadline.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

from connectors.base import Published
from gateway.audit import Actor, AuditContext, AuditRecorder, Target
from gateway.connections.media import InvalidMediaLink, MediaLinks
from gateway.connections.schemas import InstagramMediaIn, InstagramMediaOut
from gateway.connections.service import ConnectionService, Opened
from gateway.db import Database
from gateway.errors import FilegateError, NotFound
from gateway.security.principal import Principal
from gateway.uploads.models import Upload, UploadState
from gateway.uploads.quarantine import QuarantineStore
from gateway.uploads.repository import UploadRepository
from gateway.uploads.service import NotClean
from tenants.permissions import Permission

SERVABLE = (UploadState.CLEAN.value, UploadState.DELIVERING.value, UploadState.DELIVERED.value)
MEDIA_LINK = Actor("system", "media_link")


class MediaUnavailable(FilegateError):
    code = "media_link_unavailable"
    status = 503
    title = "Media links are not configured"


class PublishingService:
    def __init__(
        self,
        *,
        db: Database,
        store: QuarantineStore,
        connections: ConnectionService,
        media: MediaLinks,
        audit: AuditRecorder,
        publish_deadline: float,
    ) -> None:
        self.db = db
        self.store = store
        self.connections = connections
        self.media = media
        self.audit = audit
        self.publish_deadline = publish_deadline

    def media_url(self, tenant_id: uuid.UUID, upload_id: uuid.UUID) -> str:
        try:
            return self.media.url(tenant_id, upload_id)
        except InvalidMediaLink as exc:
            raise MediaUnavailable(str(exc)) from None

    async def publish(self, opened: Opened, upload: Upload, caption: str | None) -> Published:
        """Publish `upload` (released) through an opened publishing connection (the caller closes it and
        holds the tenant's slot; no transaction may be open)."""
        media_url = self.media_url(opened.connection.tenant_id, upload.id)
        async with self.connections.remote.deadline(self.publish_deadline):
            return await opened.publisher().publish(
                media_url=media_url,
                media_type=upload.detected_type or "application/octet-stream",
                caption=caption,
            )

    async def publish_request(
        self, principal: Principal, connection_id: uuid.UUID, data: InstagramMediaIn, ctx: AuditContext
    ) -> InstagramMediaOut:
        async with self.connections.remote.slot(principal.tenant_id):
            async with self.db.tenant(principal.tenant_id) as session:
                connection = await self.connections.load(session, principal.tenant_id, connection_id)
                upload = await UploadRepository(session, principal.tenant_id).get(data.upload_id)
            # A User publishes their own uploads only; anyone else's is answered like a missing one.
            if upload is None or not principal.may(Permission.INSTAGRAM_PUBLISH, owner_id=upload.owner_id):
                raise NotFound()
            if upload.state not in SERVABLE or upload.purged_at is not None:
                raise NotClean("only a clean upload can be published")
            opened = await self.connections.opening(connection)
            try:
                published = await self.publish(opened, upload, data.caption)
            finally:
                await opened.aclose()
        async with self.db.tenant(principal.tenant_id) as session:
            await self.audit.record(
                session,
                principal.tenant_id,
                ctx,
                action="connection.access",
                outcome="success",
                actor=principal.actor,
                target=Target("connection", str(connection_id)),
                details={"op": "publish", "upload_id": str(upload.id), "media_id": published.media_id},
            )
        return InstagramMediaOut(
            upload_id=upload.id, media_id=published.media_id, container_id=published.container_id
        )

    async def open_media(self, token: str) -> tuple[Upload, AsyncIterator[bytes]]:
        try:
            grant = self.media.verify(token)
        except InvalidMediaLink:
            raise NotFound() from None
        async with self.db.tenant(grant.tenant_id) as session:
            upload = await UploadRepository(session, grant.tenant_id).get(grant.upload_id)
            if upload is None or upload.state not in SERVABLE or upload.purged_at is not None:
                raise NotFound()
            await self.audit.record(
                session,
                grant.tenant_id,
                AuditContext(),
                action="upload.download",
                outcome="success",
                actor=MEDIA_LINK,
                target=Target("upload", str(upload.id)),
            )
        return upload, self.store.read(upload.storage_key)
