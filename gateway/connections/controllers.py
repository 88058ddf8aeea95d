"""HTTP routes of storage connections, brokered object access and signed media links.

The routes that call a tenant's service (test, brokered objects, publish) take no request-scoped session:
a transaction held while a remote service answers would pin a pooled database connection for as long as
that service likes. Their services open short transactions of their own around the call.
"""

from __future__ import annotations

import uuid

from litestar import Controller, Request, delete, get, patch, post
from litestar.background_tasks import BackgroundTask
from litestar.params import Parameter
from litestar.response import Stream
from sqlalchemy.ext.asyncio import AsyncSession

from connectors.schemas import ConnectionSpec
from gateway.audit import AuditContext
from gateway.connections.publishing import PublishingService
from gateway.connections.schemas import (
    ConnectionOut,
    ConnectionPage,
    ConnectionPatch,
    ConnectionTest,
    InstagramMediaIn,
    InstagramMediaOut,
    ObjectPage,
)
from gateway.connections.service import ConnectionService
from gateway.security.authn import EXCLUDE_OPT
from gateway.security.guards import requires
from gateway.security.principal import Principal
from gateway.uploads import filenames
from tenants.permissions import Permission

KEY_PARAM = Parameter(max_length=2048, description="object key, relative to the connection's root")


class ConnectionController(Controller):
    path = "/v1/connections"
    tags = ["connections"]

    @post("/", guards=[requires(Permission.CONNECTIONS_WRITE)], status_code=201)
    async def create_connection(
        self,
        data: ConnectionSpec,
        connections: ConnectionService,
        principal: Principal,
        session: AsyncSession,
        ctx: AuditContext,
    ) -> ConnectionOut:
        return await connections.create(session, principal, data, ctx)

    @get("/", guards=[requires(Permission.CONNECTIONS_READ)])
    async def list_connections(
        self,
        connections: ConnectionService,
        principal: Principal,
        session: AsyncSession,
        limit: int | None = Parameter(ge=1, required=False),
        cursor: str | None = Parameter(max_length=512, required=False),
    ) -> ConnectionPage:
        return await connections.list(session, principal, limit=limit, cursor=cursor)

    @get("/{connection_id:uuid}", guards=[requires(Permission.CONNECTIONS_READ)])
    async def get_connection(
        self,
        connection_id: uuid.UUID,
        connections: ConnectionService,
        principal: Principal,
        session: AsyncSession,
    ) -> ConnectionOut:
        return await connections.get(session, principal, connection_id)

    @patch("/{connection_id:uuid}", guards=[requires(Permission.CONNECTIONS_WRITE)])
    async def update_connection(
        self,
        connection_id: uuid.UUID,
        data: ConnectionPatch,
        connections: ConnectionService,
        principal: Principal,
        session: AsyncSession,
        ctx: AuditContext,
    ) -> ConnectionOut:
        return await connections.update(session, principal, connection_id, data, ctx)

    @delete("/{connection_id:uuid}", guards=[requires(Permission.CONNECTIONS_WRITE)], status_code=204)
    async def delete_connection(
        self,
        connection_id: uuid.UUID,
        connections: ConnectionService,
        principal: Principal,
        session: AsyncSession,
        ctx: AuditContext,
    ) -> None:
        await connections.delete(session, principal, connection_id, ctx)

    @post("/{connection_id:uuid}/test", guards=[requires(Permission.CONNECTIONS_WRITE)], status_code=200)
    async def test_connection(
        self,
        connection_id: uuid.UUID,
        connections: ConnectionService,
        principal: Principal,
        ctx: AuditContext,
    ) -> ConnectionTest:
        return await connections.test(principal, connection_id, ctx)

    # --- brokered access -----------------------------------------------------------------------------
    @get("/{connection_id:uuid}/objects", guards=[requires(Permission.OBJECTS_READ)])
    async def list_objects(
        self,
        connection_id: uuid.UUID,
        connections: ConnectionService,
        principal: Principal,
        ctx: AuditContext,
        prefix: str = Parameter(default="", max_length=1024),
        limit: int | None = Parameter(ge=1, required=False),
        cursor: str | None = Parameter(max_length=8192, required=False),
    ) -> ObjectPage:
        return await connections.list_objects(
            principal, connection_id, prefix=prefix, limit=limit, cursor=cursor, ctx=ctx
        )

    @get("/{connection_id:uuid}/objects/{key:path}", guards=[requires(Permission.OBJECTS_READ)])
    async def get_object(
        self,
        connection_id: uuid.UUID,
        key: str,
        connections: ConnectionService,
        principal: Principal,
        ctx: AuditContext,
    ) -> Stream:
        key = key.removeprefix("/")
        info, body = await connections.open_object(principal, connection_id, key, ctx)
        return Stream(
            body,
            # Run after the body is sent, or when the client left early: frees the tenant's slot at once.
            background=BackgroundTask(body.aclose),
            # Never the stored type: whatever is in the tenant's storage is served as bytes to save.
            media_type="application/octet-stream",
            headers={
                "Content-Disposition": filenames.content_disposition(
                    filenames.sanitize(key.rsplit("/", 1)[-1])
                ),
                "Content-Length": str(info.size),
                "X-Content-Type-Options": "nosniff",
            },
        )

    @delete(
        "/{connection_id:uuid}/objects/{key:path}",
        guards=[requires(Permission.OBJECTS_DELETE)],
        status_code=204,
    )
    async def delete_object(
        self,
        connection_id: uuid.UUID,
        key: str,
        connections: ConnectionService,
        principal: Principal,
        ctx: AuditContext,
    ) -> None:
        await connections.delete_object(principal, connection_id, key.removeprefix("/"), ctx)

    @post(
        "/{connection_id:uuid}/instagram/media",
        guards=[requires(Permission.INSTAGRAM_PUBLISH)],
        status_code=201,
    )
    async def publish_media(
        self,
        connection_id: uuid.UUID,
        data: InstagramMediaIn,
        publishing: PublishingService,
        principal: Principal,
        ctx: AuditContext,
    ) -> InstagramMediaOut:
        return await publishing.publish_request(principal, connection_id, data, ctx)


@get("/v1/media/{token:str}", opt={EXCLUDE_OPT: True}, tags=["connections"], summary="A signed media link")
async def media_link(token: str, publishing: PublishingService, request: Request) -> Stream:  # type: ignore[type-arg]
    """The bytes of one clean upload for whoever holds a valid signed link (the Instagram Graph API)."""
    upload, body = await publishing.open_media(token)
    return Stream(
        body,
        media_type=upload.detected_type or "application/octet-stream",
        headers={"Content-Length": str(upload.size), "X-Content-Type-Options": "nosniff"},
    )
