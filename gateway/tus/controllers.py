"""tus 1.0.0 routes at /v1/tus/. Every answer carries `Tus-Resumable`; errors are problems too."""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Controller, Request, Response, delete, head, patch, post, route
from litestar.status_codes import HTTP_204_NO_CONTENT

from gateway.audit import AuditContext
from gateway.errors import UnsupportedMediaType
from gateway.policy.schemas import GLOBAL_MAX_FILE_SIZE
from gateway.security.guards import requires
from gateway.security.principal import Principal
from gateway.tus import protocol
from gateway.tus.service import TusService, TusState
from gateway.uploads.ingest import body_stream, counted, until_disconnect
from tenants.permissions import Permission

GUARDS = [requires(Permission.UPLOADS_CREATE)]


def _version(request: Request[Any, Any, Any]) -> None:
    if request.headers.get("tus-resumable") != protocol.VERSION:
        raise protocol.UnsupportedVersion(
            "Tus-Resumable: 1.0.0 is required",
            headers={"Tus-Version": protocol.VERSION, **protocol.base_headers()},
        )


def _state_headers(state: TusState) -> dict[str, str]:
    return {
        **protocol.base_headers(),
        "Upload-Offset": str(state.offset),
        "Upload-Length": str(state.length),
        **protocol.expires_header(state.expires_at),
    }


def _body(request: Request[Any, Any, Any]) -> Any:
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != protocol.OFFSET_CONTENT_TYPE:
        raise UnsupportedMediaType(
            f"Content-Type must be {protocol.OFFSET_CONTENT_TYPE}", headers=protocol.base_headers()
        )
    length = protocol.parse_int_header(request.headers.get("content-length"), "Content-Length")
    if request.headers.get("upload-checksum"):
        # A checksum covers the whole chunk: a cut chunk cannot be verified, so it is discarded.
        return counted(body_stream(request), length)
    # Without one, what arrived before a cut is kept and the client resumes from there (HEAD).
    return until_disconnect(body_stream(request), length)


# /v1/tus itself (OPTIONS, POST) is served by standalone handlers: inside a controller, Litestar creates
# an automatic OPTIONS handler for the path with its first handler, which then wins over (or collides
# with) ours. The routes of one upload (/v1/tus/{id}) live in TusController.
@route(
    "/v1/tus",
    http_method="OPTIONS",
    status_code=HTTP_204_NO_CONTENT,
    include_in_schema=False,
)
async def tus_options(request: Request[Any, Any, Any], tus: TusService) -> Response[None]:
    """tus discovery: needs no credentials; Tus-Max-Size is the caller's tenant limit, or the global one."""
    principal = request.scope.get("user")
    size = await tus.max_size(principal if isinstance(principal, Principal) else None, GLOBAL_MAX_FILE_SIZE)
    return Response(
        None,
        status_code=HTTP_204_NO_CONTENT,
        headers={
            **protocol.base_headers(),
            "Tus-Version": protocol.VERSION,
            "Tus-Extension": protocol.EXTENSIONS,
            "Tus-Max-Size": str(size),
            "Tus-Checksum-Algorithm": ",".join(protocol.CHECKSUM_ALGORITHMS),
        },
    )


@post("/v1/tus", guards=GUARDS, request_max_body_size=None, status_code=201, include_in_schema=False)
async def tus_create(
    request: Request[Any, Any, Any], tus: TusService, principal: Principal, ctx: AuditContext
) -> Response[bytes]:
    """tus creation (and creation-with-upload when a body comes along)."""
    _version(request)
    has_body = int(request.headers.get("content-length") or 0) > 0 or "transfer-encoding" in request.headers
    state = await tus.create(
        principal,
        ctx,
        length=protocol.parse_int_header(request.headers.get("upload-length"), "Upload-Length"),
        metadata=request.headers.get("upload-metadata"),
        body=_body(request) if has_body else None,
        checksum=request.headers.get("upload-checksum"),
    )
    headers = {**_state_headers(state), "Location": f"/v1/tus/{state.id}"}
    return Response(b"", status_code=201, headers=headers, media_type="text/plain")


class TusController(Controller):
    path = "/v1/tus"
    tags = ["tus"]

    @head("/{upload_id:uuid}", guards=GUARDS, include_in_schema=False)
    async def head_upload(
        self, request: Request[Any, Any, Any], upload_id: uuid.UUID, tus: TusService, principal: Principal
    ) -> Response[None]:
        _version(request)
        state = await tus.head(principal, upload_id)
        return Response(None, status_code=200, headers=_state_headers(state))

    @patch(
        "/{upload_id:uuid}",
        guards=GUARDS,
        request_max_body_size=None,
        status_code=204,
        include_in_schema=False,
    )
    async def patch_upload(
        self,
        request: Request[Any, Any, Any],
        upload_id: uuid.UUID,
        tus: TusService,
        principal: Principal,
        ctx: AuditContext,
    ) -> Response[None]:
        _version(request)
        offset = protocol.parse_int_header(request.headers.get("upload-offset"), "Upload-Offset")
        if offset is None:
            raise protocol.TusError("Upload-Offset is required")
        state = await tus.patch(
            principal,
            ctx,
            upload_id,
            offset=offset,
            body=_body(request),
            checksum=request.headers.get("upload-checksum"),
        )
        return Response(None, status_code=204, headers=_state_headers(state))

    @delete("/{upload_id:uuid}", guards=GUARDS, status_code=204, include_in_schema=False)
    async def terminate(
        self,
        request: Request[Any, Any, Any],
        upload_id: uuid.UUID,
        tus: TusService,
        principal: Principal,
        ctx: AuditContext,
    ) -> Response[None]:
        _version(request)
        await tus.terminate(principal, ctx, upload_id)
        return Response(None, status_code=204, headers=protocol.base_headers())
