"""Dependency providers: services built once in the lifespan, sessions per request."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from litestar import Request
from litestar.datastructures import State
from litestar.di import Provide
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.audit import AuditContext
from gateway.security.client import audit_context
from gateway.security.guards import principal_of
from gateway.security.principal import Principal


async def provide_session(request: Request[Any, Any, Any]) -> AsyncGenerator[AsyncSession, None]:
    """The caller's tenant-bound transaction: committed after the handler, rolled back if it raises."""
    principal = principal_of(request)
    async with request.app.state.db.tenant(principal.tenant_id) as session:
        yield session


def provide_principal(request: Request[Any, Any, Any]) -> Principal:
    return principal_of(request)


def provide_ctx(request: Request[Any, Any, Any]) -> AuditContext:
    return audit_context(request)


def _from_state(name: str) -> Provide:
    def provider(state: State) -> Any:
        return getattr(state, name)

    provider.__name__ = f"provide_{name}"
    return Provide(provider, sync_to_thread=False)


DEPENDENCIES: dict[str, Provide] = {
    "session": Provide(provide_session),
    "principal": Provide(provide_principal, sync_to_thread=False),
    "ctx": Provide(provide_ctx, sync_to_thread=False),
    **{
        name: _from_state(name)
        for name in (
            "identity",
            "users",
            "api_keys",
            "policy",
            "tenants",
            "audit",
            "uploads",
            "tus",
            "connections",
            "publishing",
            "oidc",
        )
    },
}
