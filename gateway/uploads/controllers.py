"""HTTP routes of uploads: ingest (raw or multipart), list, read, download, delete."""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Controller, Request, delete, get, post
from litestar.params import Parameter
from litestar.response import Stream
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.audit import AuditContext
from gateway.errors import ValidationFailed
from gateway.security.guards import requires
from gateway.security.principal import Principal
from gateway.uploads import filenames
from gateway.uploads.ingest import (
    MultipartUpload,
    body_stream,
    counted,
    filename_from_disposition,
    optional_uuid,
)
from gateway.uploads.schemas import UploadOut, UploadPage
from gateway.uploads.service import IncomingFile, UploadService
from tenants.permissions import Permission

# Served as themselves; anything else is served as opaque bytes (always as an attachment, sandboxed).
INLINE_SAFE = (
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "video/mp4",
    "video/webm",
    "audio/mpeg",
    "application/pdf",
    "text/plain",
)


def _content_length(request: Request[Any, Any, Any]) -> int | None:
    raw = request.headers.get("content-length")
    if raw is None:
        return None
    if not (raw.isascii() and raw.isdigit()):
        raise ValidationFailed("Content-Length must be a number")
    return int(raw)


class UploadController(Controller):
    path = "/v1/uploads"
    tags = ["uploads"]

    @post(
        "/",
        guards=[requires(Permission.UPLOADS_CREATE)],
        status_code=202,
        request_max_body_size=None,
        summary="Upload a file (multipart field `file`, or a raw body)",
    )
    async def create_upload(
        self,
        request: Request[Any, Any, Any],
        uploads: UploadService,
        principal: Principal,
        ctx: AuditContext,
        connection_id: str | None = Parameter(query="connection_id", required=False, max_length=64),
        path: str | None = Parameter(query="path", required=False, max_length=1024),
    ) -> UploadOut:
        content_type = request.headers.get("content-type", "")
        length = _content_length(request)
        policy = await uploads.tenant_policy(principal.tenant_id)
        if content_type.lower().startswith("multipart/form-data"):
            # The announced length covers the whole form: only refuse when even that is over the limit.
            uploads.refuse_early(policy, IncomingFile(None, None, length))
            form = MultipartUpload(counted(body_stream(request), length), content_type)
            await form.start()
            incoming = IncomingFile(
                filename=form.filename,
                declared_type=form.content_type,
                content_length=None,
                connection_id=optional_uuid(form.fields.get("connection_id"), "connection_id"),
                path=form.fields.get("path"),
            )
            return await uploads.ingest(principal, ctx, incoming, form.chunks(), policy=policy)
        incoming = IncomingFile(
            filename=filename_from_disposition(request.headers.get("content-disposition")),
            declared_type=content_type or None,
            content_length=length,
            connection_id=optional_uuid(connection_id, "connection_id"),
            path=path,
        )
        return await uploads.ingest(
            principal, ctx, incoming, counted(body_stream(request), length), policy=policy
        )

    @get("/", guards=[requires(Permission.UPLOADS_READ)])
    async def list_uploads(
        self,
        uploads: UploadService,
        principal: Principal,
        session: AsyncSession,
        upload_state: str | None = Parameter(query="state", required=False, max_length=32),
        limit: int | None = Parameter(ge=1, required=False),
        cursor: str | None = None,
    ) -> UploadPage:
        return await uploads.list(session, principal, state=upload_state, limit=limit, cursor=cursor)

    @get("/{upload_id:uuid}", guards=[requires(Permission.UPLOADS_READ)])
    async def get_upload(
        self, upload_id: uuid.UUID, uploads: UploadService, principal: Principal, session: AsyncSession
    ) -> UploadOut:
        return await uploads.get(session, principal, upload_id)

    @get(
        "/{upload_id:uuid}/content",
        guards=[requires(Permission.UPLOADS_READ)],
        summary="The bytes of a clean upload (409 not_clean otherwise)",
    )
    async def get_content(
        self,
        upload_id: uuid.UUID,
        uploads: UploadService,
        principal: Principal,
        session: AsyncSession,
        ctx: AuditContext,
    ) -> Stream:
        upload, body = await uploads.open_content(session, principal, upload_id, ctx)
        media_type = (
            upload.detected_type if upload.detected_type in INLINE_SAFE else "application/octet-stream"
        )
        return Stream(
            body,
            media_type=media_type,
            headers={
                "Content-Disposition": filenames.content_disposition(upload.filename),
                "Content-Length": str(upload.size),
                "X-Content-Type-Options": "nosniff",
                "ETag": f'"{upload.sha256}"' if upload.sha256 else "",
            },
        )

    @post(
        "/{upload_id:uuid}/retry",
        guards=[requires(Permission.UPLOADS_RETRY)],
        status_code=202,
        summary="Owe a failed delivery again",
    )
    async def retry_delivery(
        self, upload_id: uuid.UUID, uploads: UploadService, principal: Principal, ctx: AuditContext
    ) -> UploadOut:
        return await uploads.retry_delivery(principal, upload_id, ctx)

    @delete("/{upload_id:uuid}", guards=[requires(Permission.UPLOADS_DELETE)], status_code=204)
    async def delete_upload(
        self,
        upload_id: uuid.UUID,
        uploads: UploadService,
        principal: Principal,
        session: AsyncSession,
        ctx: AuditContext,
    ) -> None:
        await uploads.delete(session, principal, upload_id, ctx)
