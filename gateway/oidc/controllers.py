"""HTTP routes of OpenID Connect sign-in and of the tenant's identity-provider configuration."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, delete, get, put
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.audit import AuditContext
from gateway.identity.schemas import TokenPair
from gateway.oidc.schemas import ProviderIn, ProviderList, ProviderOut
from gateway.oidc.service import BINDING_COOKIE, OidcService, binding_cookie
from gateway.security.authn import EXCLUDE_OPT
from gateway.security.guards import requires
from gateway.security.principal import Principal
from gateway.security.sessions import cookie_value, session_cookie
from tenants.permissions import Permission
from tenants.repository import TenantRecordRepository

PUBLIC = {EXCLUDE_OPT: True}


def base_url(request: Request[Any, Any, Any]) -> str:
    public: str | None = request.app.state.settings.server.public_url
    return (public or str(request.base_url)).rstrip("/")


class OidcLoginController(Controller):
    path = "/v1/auth/oidc"
    tags = ["identity"]

    @get("/{provider:str}/login", opt=PUBLIC, status_code=302, summary="Start signing in with a provider")
    async def login(
        self,
        request: Request[Any, Any, Any],
        provider: str,
        oidc: OidcService,
        tenant: str = Parameter(max_length=64),
        redirect_to: str | None = Parameter(required=False, max_length=2048),
        response: str | None = Parameter(required=False, max_length=16),
    ) -> Response[None]:
        start = await oidc.begin(
            slug=tenant,
            name=provider[:64],
            redirect_to=redirect_to,
            mode=response,
            base_url=base_url(request),
        )
        return Response(
            None,
            status_code=302,
            headers={"Location": start.authorization_url},
            cookies=[binding_cookie(start.binding_cookie)],
        )

    @get("/{provider:str}/callback", opt=PUBLIC, summary="The provider's redirect back")
    async def callback(
        self, request: Request[Any, Any, Any], provider: str, oidc: OidcService, ctx: AuditContext
    ) -> Response[TokenPair | None]:
        params = {k: v for k, v in request.query_params.items() if isinstance(v, str) and len(v) <= 4096}
        done = await oidc.complete(
            name=provider[:64],
            params=params,
            binding=cookie_value(request.headers.get("cookie"), BINDING_COOKIE),
            ctx=ctx,
            base_url=base_url(request),
        )
        cleared = binding_cookie("", max_age=0)
        if done.mode == "tokens":
            return Response(done.tokens, status_code=200, cookies=[cleared])
        assert done.session_id is not None
        return Response(
            None,
            status_code=302,
            headers={"Location": done.redirect_to},
            cookies=[session_cookie(done.session_id, max_age=oidc.sessions.absolute), cleared],
        )


class IdentityProviderController(Controller):
    path = "/v1/identity-providers"
    tags = ["identity"]
    guards = [requires(Permission.USERS_WRITE)]

    async def _slug(self, session: AsyncSession, principal: Principal) -> str | None:
        tenant = await TenantRecordRepository(session).get(principal.tenant_id)
        return tenant.slug if tenant else None

    @get("/")
    async def list_providers(
        self, request: Request[Any, Any, Any], oidc: OidcService, principal: Principal, session: AsyncSession
    ) -> ProviderList:
        slug = await self._slug(session, principal)
        return await oidc.list_providers(session, principal, base_url=base_url(request), slug=slug)

    @get("/{name:str}")
    async def get_provider(
        self,
        request: Request[Any, Any, Any],
        name: str,
        oidc: OidcService,
        principal: Principal,
        session: AsyncSession,
    ) -> ProviderOut:
        slug = await self._slug(session, principal)
        return await oidc.get_provider(session, principal, name, base_url=base_url(request), slug=slug)

    @put("/{name:str}")
    async def put_provider(
        self,
        request: Request[Any, Any, Any],
        name: str,
        data: ProviderIn,
        oidc: OidcService,
        principal: Principal,
        session: AsyncSession,
        ctx: AuditContext,
    ) -> ProviderOut:
        slug = await self._slug(session, principal)
        return await oidc.put_provider(
            session, principal, name, data, ctx, base_url=base_url(request), slug=slug
        )

    @delete("/{name:str}", status_code=204)
    async def delete_provider(
        self, name: str, oidc: OidcService, principal: Principal, session: AsyncSession, ctx: AuditContext
    ) -> None:
        await oidc.delete_provider(session, principal, name, ctx)
