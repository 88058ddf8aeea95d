"""HTTP routes of API keys."""

from __future__ import annotations

import uuid

from litestar import Controller, delete, get, post
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.api_keys.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyPage
from gateway.api_keys.service import ApiKeyService
from gateway.audit import AuditContext
from gateway.security.guards import requires
from gateway.security.principal import Principal
from tenants.permissions import Permission


class ApiKeyController(Controller):
    path = "/v1/api-keys"
    tags = ["api keys"]
    guards = [requires(Permission.API_KEYS_MANAGE)]

    @get("/")
    async def list_keys(
        self,
        api_keys: ApiKeyService,
        principal: Principal,
        session: AsyncSession,
        limit: int | None = Parameter(ge=1, required=False),
        cursor: str | None = None,
    ) -> ApiKeyPage:
        return await api_keys.list(session, principal, limit=limit, cursor=cursor)

    @post("/", status_code=201)
    async def create_key(
        self,
        data: ApiKeyCreate,
        api_keys: ApiKeyService,
        principal: Principal,
        session: AsyncSession,
        ctx: AuditContext,
    ) -> ApiKeyCreated:
        return await api_keys.create(session, principal, data, ctx)

    @delete("/{key_id:uuid}", status_code=204)
    async def revoke_key(
        self,
        key_id: uuid.UUID,
        api_keys: ApiKeyService,
        principal: Principal,
        session: AsyncSession,
        ctx: AuditContext,
    ) -> None:
        await api_keys.revoke(session, principal, key_id, ctx)
