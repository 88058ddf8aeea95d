"""Authentication of bearer credentials: access JWTs and API keys.

JWTs are checked in memory (signature, claims) plus one Redis round trip for revocation (the token's
`jti` after logout, the user's sessions after disable/role/password change). API keys are checked
against the database on every request, so a revoked key fails on the very next one.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send
from redis.asyncio import Redis

from gateway.audit import Actor, AuditContext, AuditRecorder, Target
from gateway.db import Database
from gateway.errors import InvalidToken
from gateway.security.client import audit_context_of_scope
from gateway.security.principal import Principal
from tenants import credentials
from tenants.models import Role
from tenants.permissions import restrict
from tenants.repository import ApiKeyRepository, UserRepository
from tenants.tokens import AccessTokens, InvalidAccessToken

log = structlog.get_logger("filegate.auth")

# last_used_at and the `api_key.use` audit event advance at most once per this interval per key.
API_KEY_USE_INTERVAL = timedelta(seconds=60)
EXCLUDE_OPT = "exclude_from_auth"
# Litestar's own OpenAPI routes carry no opt of ours; they are public documents.
PUBLIC_PREFIXES = ("/schema",)


class Revocations:
    """Redis-held revocation state for access tokens, which expire within minutes anyway."""

    def __init__(self, redis: Redis, prefix: str, *, max_ttl: int) -> None:
        self._redis = redis
        self._prefix = prefix
        self._max_ttl = max_ttl

    def _jti(self, jti: str) -> str:
        return f"{self._prefix}deny:jti:{jti}"

    def _user(self, user_id: uuid.UUID) -> str:
        return f"{self._prefix}revoked:user:{user_id}"

    async def deny_token(self, jti: str, exp: int) -> None:
        ttl = max(int(exp - time.time()) + 5, 1)
        await self._redis.set(self._jti(jti), "1", ex=ttl)

    async def revoke_user(self, user_id: uuid.UUID) -> None:
        """Every access token of this user issued until now stops working."""
        await self._redis.set(self._user(user_id), repr(time.time()), ex=self._max_ttl + 60)

    async def is_revoked(self, jti: str, user_id: uuid.UUID, issued_at: float) -> bool:
        denied, revoked_after = await self._redis.mget(self._jti(jti), self._user(user_id))
        if denied is not None:
            return True
        return revoked_after is not None and issued_at <= float(revoked_after)


class Authenticator:
    def __init__(
        self, *, tokens: AccessTokens, revocations: Revocations, db: Database, audit: AuditRecorder
    ) -> None:
        self.tokens = tokens
        self.revocations = revocations
        self.db = db
        self.audit = audit

    async def authenticate(self, credential: str, ctx: AuditContext) -> Principal:
        if credentials.looks_like_api_key(credential):
            return await self._api_key(credential, ctx)
        return await self._jwt(credential)

    async def _jwt(self, token: str) -> Principal:
        try:
            claims = self.tokens.verify(token)
            role = Role(claims.role)
        except (InvalidAccessToken, ValueError) as exc:
            log.info("auth.token_rejected", reason=str(exc)[:80])
            raise InvalidToken() from None
        if await self.revocations.is_revoked(claims.jti, claims.user_id, claims.issued_at):
            log.info("auth.token_rejected", reason="revoked")
            raise InvalidToken()
        return Principal(
            tenant_id=claims.tenant_id,
            user_id=claims.user_id,
            role=role,
            grants=restrict(role, None),
            via="jwt",
            jti=claims.jti,
            token_exp=claims.expires_at,
        )

    async def _api_key(self, raw: str, ctx: AuditContext) -> Principal:
        parsed = credentials.parse_credential(raw, credentials.API_KEY_PREFIX)
        if parsed is None:
            raise InvalidToken()
        tenant_id = await self.db.tenant_for_api_key(parsed.id)
        if tenant_id is None:
            raise InvalidToken()
        now = datetime.now(UTC)
        async with self.db.tenant(tenant_id) as session:
            keys = ApiKeyRepository(session, tenant_id)
            key = await keys.get(parsed.id)
            if key is None or not credentials.matches(parsed.secret, key.secret_hash):
                raise InvalidToken()
            if key.revoked_at is not None or (key.expires_at is not None and key.expires_at <= now):
                raise InvalidToken()
            creator = await UserRepository(session, tenant_id).get_live(key.created_by)
            if creator is None or creator.disabled:
                raise InvalidToken()
            role = Role(creator.role)
            # A key never holds more than its creator holds today.
            principal = Principal(
                tenant_id=tenant_id,
                user_id=creator.id,
                role=role,
                grants=restrict(role, key.scopes),
                via="api_key",
                api_key_id=key.id,
            )
            if await keys.touch(key.id, now, older_than=now - API_KEY_USE_INTERVAL):
                await self.audit.record(
                    session,
                    tenant_id,
                    ctx,
                    action="api_key.use",
                    outcome="success",
                    actor=Actor("api_key", str(key.id)),
                    target=Target("api_key", str(key.id)),
                )
        return principal


def bearer(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            try:
                text = value.decode("latin-1")
            except UnicodeDecodeError:
                return ""
            scheme, _, cred = text.partition(" ")
            return cred.strip() if scheme.lower() == "bearer" and cred.strip() else ""
    return None


class AuthenticationMiddleware:
    """Sets `scope["user"]` to a Principal when a bearer credential is present; a bad one is a 401.

    Routes that authenticate differently (login, refresh, operator, health) opt out with
    `opt={"exclude_from_auth": True}`; routes that need a principal say so with a guard.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP:
            handler: Any = scope.get("route_handler")
            excluded = bool(handler is not None and handler.opt.get(EXCLUDE_OPT)) or scope["path"].startswith(
                PUBLIC_PREFIXES
            )
            scope["user"] = None
            if not excluded:
                cred = bearer(scope)
                if cred is not None:
                    if not cred:
                        raise InvalidToken()
                    state = scope["app"].state
                    ctx = audit_context_of_scope(scope, state.settings.server.trusted_proxies)
                    scope["user"] = await state.authenticator.authenticate(cred, ctx)
        await self.app(scope, receive, send)
