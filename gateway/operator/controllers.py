"""The operator API, authenticated by FILEGATE_OPERATOR_TOKEN (disabled when it is unset).

The operator token stands above every tenant, so guessing it is bounded: wrong tokens are counted per
client address in Redis and, past FILEGATE_OPERATOR_FAILURE_LIMIT in a window, every attempt from that
address is a 429 before its token is even compared. There is no tenant to audit a failure in, so each
one is a `security.operator_token_rejected` log line (the address, never the token) and reaching the
limit a `security.alert`.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import structlog
from litestar import post
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from gateway.audit import Actor, AuditContext
from gateway.errors import InvalidToken, NotFound, Unauthenticated
from gateway.operator.schemas import TenantCreate, TenantCreated
from gateway.operator.service import TenantService
from gateway.security.authn import EXCLUDE_OPT, bearer
from gateway.security.client import client_ip
from gateway.security.ratelimit import RateLimiter, subject

log = structlog.get_logger("filegate.operator")

FAILURE_BUCKET = "operator-fail"
FAILURE_WINDOW = 900  # seconds


def same_secret(presented: str, expected: str) -> bool:
    """Constant time, length included: both sides are hashed to 32 bytes before the comparison."""
    return hmac.compare_digest(
        hashlib.sha256(presented.encode()).digest(), hashlib.sha256(expected.encode()).digest()
    )


async def operator_only(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    state = connection.app.state
    expected: str | None = state.settings.auth.operator_token
    if not expected:
        raise NotFound("the operator API is disabled")
    presented = bearer(connection.scope)
    if presented is None:
        raise Unauthenticated()
    limiter: RateLimiter = state.limiter
    limit: int = state.settings.auth.operator_failure_limit
    ip = client_ip(connection, state.settings.server.trusted_proxies)
    who = subject("operator", ip)
    await limiter.check(FAILURE_BUCKET, who, limit=limit, period=FAILURE_WINDOW)
    if not same_secret(presented, expected):
        log.warning("security.operator_token_rejected", ip=ip)
        window = await limiter.hit(FAILURE_BUCKET, who, limit=limit, period=FAILURE_WINDOW)
        if window.remaining <= 0:
            log.warning("security.alert", kind="operator_token_guessing", ip=ip, seconds=window.reset)
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
