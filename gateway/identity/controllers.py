"""HTTP routes of identity; each one parses, calls the service, shapes the answer."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import State
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.audit import AuditContext
from gateway.errors import Unauthenticated
from gateway.identity.schemas import (
    LoginRequest,
    LogoutRequest,
    Me,
    RefreshRequest,
    SessionInfo,
    TokenPair,
    TotpConfirm,
    TotpConfirmed,
    TotpEnrollment,
)
from gateway.identity.service import IdentityService
from gateway.security.authn import EXCLUDE_OPT
from gateway.security.guards import authenticated
from gateway.security.principal import Principal
from gateway.security.sessions import cleared_cookie, cookie_value

PUBLIC = {EXCLUDE_OPT: True}


class AuthController(Controller):
    path = "/v1/auth"
    tags = ["identity"]

    @post("/login", opt=PUBLIC, status_code=200, summary="Log in with tenant, email, password (+TOTP)")
    async def login(
        self, data: LoginRequest, identity: IdentityService, ctx: AuditContext
    ) -> Response[TokenPair]:
        pair, headers = await identity.login(
            tenant=data.tenant, email=data.email, password=data.password, totp_code=data.totp, ctx=ctx
        )
        return Response(pair, headers=headers)

    @post("/refresh", opt=PUBLIC, status_code=200, summary="Rotate a refresh token")
    async def refresh(
        self, data: RefreshRequest, identity: IdentityService, ctx: AuditContext
    ) -> Response[TokenPair]:
        pair, headers = await identity.refresh(data.refresh_token, ctx)
        return Response(pair, headers=headers)

    # A logout also tells a browser to drop its session cookie (harmless for bearer clients).
    @post(
        "/logout",
        guards=[authenticated],
        status_code=204,
        summary="Revoke this session",
        response_cookies=[cleared_cookie()],
    )
    async def logout(
        self,
        request: Request[Any, Any, Any],
        identity: IdentityService,
        principal: Principal,
        ctx: AuditContext,
        data: LogoutRequest | None = None,
    ) -> None:
        await identity.logout(principal, data.refresh_token if data else None, ctx)
        if principal.via == "session":
            session_id = cookie_value(request.headers.get("cookie"))
            if session_id:
                await request.app.state.sessions.delete(session_id)

    @get("/session", guards=[authenticated], summary="The browser session: who, and its CSRF token")
    async def browser_session(self, request: Request[Any, Any, Any], principal: Principal) -> SessionInfo:
        if principal.via != "session":
            raise Unauthenticated("no browser session (this route is for the session cookie)")
        session_id = cookie_value(request.headers.get("cookie")) or ""
        _, session = await request.app.state.authenticator.session(session_id)
        return SessionInfo(
            user_id=session.user_id,
            tenant_id=session.tenant_id,
            role=session.role,
            csrf_token=session.csrf_token,
            expires_at=datetime.fromtimestamp(session.expires_at, UTC),
        )

    @post("/mfa/totp", guards=[authenticated], status_code=200, summary="Start TOTP enrollment")
    async def enroll_totp(
        self, identity: IdentityService, principal: Principal, session: AsyncSession, ctx: AuditContext
    ) -> TotpEnrollment:
        return await identity.enroll_totp(session, principal, ctx)

    @post("/mfa/totp/confirm", guards=[authenticated], status_code=200, summary="Confirm TOTP enrollment")
    async def confirm_totp(
        self,
        data: TotpConfirm,
        identity: IdentityService,
        principal: Principal,
        session: AsyncSession,
        ctx: AuditContext,
    ) -> TotpConfirmed:
        return await identity.confirm_totp(session, principal, data.code, ctx)


@get("/v1/me", guards=[authenticated], tags=["identity"], summary="The caller")
async def me(identity: IdentityService, principal: Principal) -> Me:
    return await identity.me(principal)


@get(
    "/.well-known/jwks.json",
    opt=PUBLIC,
    tags=["identity"],
    summary="Public keys of access tokens",
    media_type="application/json",
)
async def jwks(state: State) -> dict[str, Any]:
    jwks_doc: dict[str, Any] = state.jwks
    return jwks_doc
