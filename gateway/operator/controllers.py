"""The operator API, authenticated by FILEGATE_OPERATOR_TOKEN (disabled when it is unset)."""

from __future__ import annotations

import hmac
from typing import Any

from litestar import post
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from gateway.audit import Actor, AuditContext
from gateway.errors import InvalidToken, NotFound, Unauthenticated
from gateway.operator.schemas import TenantCreate, TenantCreated
from gateway.operator.service import TenantService
from gateway.security.authn import EXCLUDE_OPT, bearer


async def operator_only(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    expected: str | None = connection.app.state.settings.auth.operator_token
    if not expected:
        raise NotFound("the operator API is disabled")
    presented = bearer(connection.scope)
    if presented is None:
        raise Unauthenticated()
    if not hmac.compare_digest(presented.encode(), expected.encode()):
        raise InvalidToken("wrong operator token")


@post(
    "/v1/tenants",
    guards=[operator_only],
    opt={EXCLUDE_OPT: True},
    status_code=201,
    tags=["operator"],
    summary="Create a tenant and its first admin (platform operator)",
)
async def create_tenant(data: TenantCreate, tenants: TenantService, ctx: AuditContext) -> TenantCreated:
    return await tenants.create(data, ctx, actor=Actor("operator"))
