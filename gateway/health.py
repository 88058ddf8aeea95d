"""Liveness, readiness and metrics."""

from __future__ import annotations

import asyncio
import hmac
from typing import Any, Literal

import msgspec
from litestar import Response, get
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.handlers.base import BaseRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.plugins.prometheus import PrometheusController

from gateway.errors import InvalidToken, Unauthenticated
from gateway.security.authn import EXCLUDE_OPT, bearer

Check = Literal["ok", "down", "absent"]
CHECK_TIMEOUT = 2.0


class Live(msgspec.Struct):
    status: str


class Ready(msgspec.Struct):
    status: str
    checks: dict[str, Check]


@get("/health/live", opt={EXCLUDE_OPT: True}, tags=["operations"])
async def live() -> Live:
    return Live(status="ok")


def _ping(clamd: Any) -> Any:
    async def ping() -> None:
        if not await clamd.ping():
            raise ConnectionError("clamd did not answer PONG")

    return ping


async def _probe(check: Any) -> Check:
    try:
        await asyncio.wait_for(check(), CHECK_TIMEOUT)
    except Exception:
        return "down"
    return "ok"


@get(
    "/health/ready",
    opt={EXCLUDE_OPT: True},
    tags=["operations"],
    responses={503: ResponseSpec(data_container=Ready, description="the database or Redis is down")},
)
async def ready(state: State) -> Response[Ready]:
    checks: dict[str, Check] = {
        "database": await _probe(state.db.ping),
        "redis": await _probe(state.redis.ping) if state.redis is not None else "absent",
        # clamd down keeps the gateway ready: uploads wait in quarantine until it returns.
        "clamd": await _probe(_ping(state.clamd)) if state.clamd is not None else "absent",
    }
    healthy = checks["database"] == "ok" and checks["redis"] != "down"
    return Response(
        Ready(status="ok" if healthy else "unavailable", checks=checks), status_code=200 if healthy else 503
    )


async def metrics_token(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    expected: str | None = connection.app.state.settings.server.metrics_token
    if not expected:
        return
    presented = bearer(connection.scope)
    if presented is None:
        raise Unauthenticated()
    if not hmac.compare_digest(presented.encode(), expected.encode()):
        raise InvalidToken()


class MetricsController(PrometheusController):
    path = "/metrics"
    guards = [metrics_token]
    opt = {EXCLUDE_OPT: True}
    include_in_schema = False
