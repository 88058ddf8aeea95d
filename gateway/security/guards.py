"""Guards read the one permission matrix (through the principal's grants); every denial is audited."""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.types import Guard

from gateway.audit import AuditRecorder, Target
from gateway.errors import Forbidden, Unauthenticated
from gateway.security.client import audit_context
from gateway.security.principal import Principal
from tenants.permissions import Permission, Reach


def principal_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    principal = connection.scope.get("user")
    if not isinstance(principal, Principal):
        raise Unauthenticated()
    return principal


async def authenticated(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    principal_of(connection)


async def deny(
    connection: ASGIConnection[Any, Any, Any, Any],
    principal: Principal,
    permission: str,
    target: Target | None = None,
) -> Forbidden:
    """Record `access.denied` in its own transaction and return the 403 to raise."""
    recorder: AuditRecorder = connection.app.state.audit
    await recorder.record_alone(
        principal.tenant_id,
        audit_context(connection),
        action="access.denied",
        outcome="denied",
        actor=principal.actor,
        target=target,
        details={
            "permission": permission,
            "method": connection.scope.get("method", ""),
            "route": _route(connection),
        },
    )
    return Forbidden("you do not have permission for this action")


def _route(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    # The route template, never the concrete path: ids of other resources stay out of the log.
    return str(connection.scope.get("path_template") or "")[:200]


def requires(permission: Permission) -> Guard:
    """A guard: the principal must hold `permission` (at any reach; services apply ownership)."""

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        principal = principal_of(connection)
        if principal.reach(permission) is None:
            raise await deny(connection, principal, permission.value)

    guard.__qualname__ = guard.__name__ = f"requires_{permission.name.lower()}"
    return guard


def requires_any(permission: Permission) -> Guard:
    """A guard: the principal must hold `permission` over every resource of the tenant (reach ANY)."""

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        principal = principal_of(connection)
        if principal.reach(permission) is not Reach.ANY:
            raise await deny(connection, principal, permission.value)

    guard.__qualname__ = guard.__name__ = f"requires_any_{permission.name.lower()}"
    return guard


def owned_or_any(permission: Permission) -> Guard:
    """A guard for `/{id}` routes about users: ANY reach, or OWN reach when the id is the caller's own."""

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        principal = principal_of(connection)
        owner = connection.path_params.get("user_id")
        if not principal.may(permission, owner_id=owner):
            raise await deny(connection, principal, permission.value)

    guard.__qualname__ = guard.__name__ = f"owned_or_any_{permission.name.lower()}"
    return guard
