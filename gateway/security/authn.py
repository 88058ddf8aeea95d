"""Authentication of bearer credentials: access JWTs and API keys (and the browser session cookie).

JWTs are checked in memory (signature and claims, once per token) plus one Redis round trip for
revocation (the user's session epoch and the token's refresh-token family, answers the database gives
when Redis does not know them: see `revocation`). The in-process cache of verified tokens holds only
what never changes; revocation is asked on every request.
API keys are checked against a record cached in Redis for a few minutes (sealed for its key, see
`redis_records`: a record the servers did not write is reloaded from the database) and a tombstone written before
the revoking transaction commits, so a revoked key fails on the very next request; a record carries its
creator's session epoch, so a creator's role change, disablement or erasure invalidates it, and a record
whose creator's epoch Redis no longer knows is reloaded from the database.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import structlog
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send
from redis.asyncio import Redis

from gateway.audit import Actor, AuditContext, AuditRecorder, Target
from gateway.db import Database
from gateway.errors import InvalidToken
from gateway.security.client import audit_context_of_scope
from gateway.security.principal import Principal
from gateway.security.redis_records import RecordSeal
from gateway.security.revocation import Revocations, epoch_text
from gateway.security.sessions import (
    CSRF_HEADER,
    UNSAFE_METHODS,
    BrowserSession,
    CsrfFailed,
    SessionStore,
    cookie_value,
    csrf_matches,
)
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


class KeyRecord(msgspec.Struct, frozen=True):
    """What authenticating an API key needs, cached in Redis for a few minutes."""

    tenant_id: uuid.UUID
    secret_hash: str
    scopes: list[str]
    expires_at: float | None
    creator_id: uuid.UUID
    creator_role: str
    creator_epoch: str  # the creator's session epoch when read: a record of another epoch is stale
    usable: bool  # not revoked, creator live and enabled


KEY_RECORD_TTL = 300
MAX_REMEMBERED_KEYS = 50_000


def _decoded_record(payload: str) -> KeyRecord | None:
    try:
        return msgspec.json.decode(payload, type=KeyRecord)
    except msgspec.DecodeError:  # written by another version: reload it
        return None


class UseThrottle:
    """Per process: is it time to record this key's use again? Across replicas a key is recorded at most
    once a minute per replica, which bounds audit volume without a shared round trip per request."""

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._next: dict[uuid.UUID, float] = {}

    def due(self, key_id: uuid.UUID) -> bool:
        now = time.monotonic()
        if self._next.get(key_id, 0.0) > now:
            return False
        if len(self._next) > MAX_REMEMBERED_KEYS:
            self._next = {k: v for k, v in self._next.items() if v > now}
        self._next[key_id] = now + self._interval
        return True


class Authenticator:
    def __init__(
        self,
        *,
        tokens: AccessTokens,
        revocations: Revocations,
        db: Database,
        audit: AuditRecorder,
        redis: Redis,
        seal: RecordSeal,
        sessions: SessionStore | None = None,
    ) -> None:
        self.sessions = sessions
        self._seal = seal
        self.tokens = tokens
        self.revocations = revocations
        self.db = db
        self.audit = audit
        self._redis = redis
        self._creators: dict[uuid.UUID, uuid.UUID] = {}
        self._use_throttle = UseThrottle(API_KEY_USE_INTERVAL.total_seconds())

    async def authenticate(self, credential: str, ctx: AuditContext) -> Principal:
        if credentials.looks_like_api_key(credential):
            return await self._api_key(credential, ctx)
        return await self._jwt(credential)

    async def session(self, session_id: str) -> tuple[Principal, BrowserSession]:
        """The principal of a browser session cookie; unknown, expired or revoked sessions are a 401."""
        session = await self.sessions.get(session_id) if self.sessions is not None else None
        if session is None:
            raise InvalidToken()
        if not await self.revocations.is_live(session.tenant_id, session.user_id, session.epoch):
            log.info("auth.session_rejected", reason="revoked")
            raise InvalidToken()
        role = Role(session.role)
        principal = Principal(
            tenant_id=session.tenant_id,
            user_id=session.user_id,
            role=role,
            grants=restrict(role, None),
            via="session",
        )
        return principal, session

    async def _jwt(self, token: str) -> Principal:
        try:
            claims = self.tokens.verify(token)
            role = Role(claims.role)
        except (InvalidAccessToken, ValueError) as exc:
            log.info("auth.token_rejected", reason=str(exc)[:80])
            raise InvalidToken() from None
        if not await self.revocations.is_live(
            claims.tenant_id, claims.user_id, claims.epoch, claims.session_id
        ):
            log.info("auth.token_rejected", reason="revoked")
            raise InvalidToken()
        return Principal(
            tenant_id=claims.tenant_id,
            user_id=claims.user_id,
            role=role,
            grants=restrict(role, None),
            via="jwt",
            session_id=claims.session_id,
        )

    async def _api_key(self, raw: str, ctx: AuditContext) -> Principal:
        parsed = credentials.parse_credential(raw, credentials.API_KEY_PREFIX)
        if parsed is None:
            raise InvalidToken()
        record = await self._key_record(parsed.id)
        if (
            record is None
            or not record.usable
            or not credentials.matches(parsed.secret, record.secret_hash)
            or (record.expires_at is not None and record.expires_at <= time.time())
        ):
            raise InvalidToken()
        role = Role(record.creator_role)
        principal = Principal(
            tenant_id=record.tenant_id,
            user_id=record.creator_id,
            role=role,
            # A key never holds more than its creator holds today.
            grants=restrict(role, record.scopes),
            via="api_key",
            api_key_id=parsed.id,
        )
        if self._use_throttle.due(parsed.id):
            await self._record_use(record.tenant_id, parsed.id, ctx)
        return principal

    async def _key_record(self, key_id: uuid.UUID) -> KeyRecord | None:
        """The key's record in one Redis round trip: cached record, tombstone and creator's session epoch."""
        cache_key = self.revocations.api_key_record_key(key_id)
        # A key's creator never changes, so once known it rides along in the same MGET.
        creator = self._creators.get(key_id)
        names = [cache_key, self.revocations.api_key_key(key_id)]
        if creator is not None:
            names.append(self.revocations.epoch_key(creator))
        values = await self._redis.mget(names)
        cached, tombstone = values[0], values[1]
        if tombstone is not None:
            return None
        payload = await self.revocations.verified(cache_key, cached)
        record = _decoded_record(payload) if payload is not None else None
        if record is not None:
            epoch_key = self.revocations.epoch_key(record.creator_id)
            if creator == record.creator_id:
                epoch = await self.revocations.verified(epoch_key, values[2])
            else:
                epoch = await self.revocations.verified(epoch_key, await self._redis.get(epoch_key))
                self._remember_creator(key_id, record.creator_id)
            # An epoch Redis lost is not "unchanged": the record is trusted only against a known epoch.
            if epoch is not None and epoch == record.creator_epoch:
                return record
        loaded = await self._load_key(key_id)
        if loaded is not None:
            self._remember_creator(key_id, loaded.creator_id)
            record_text = msgspec.json.encode(loaded).decode()
            sealed = self._seal.seal(cache_key, record_text, ttl=KEY_RECORD_TTL)
            await self._redis.set(cache_key, sealed, ex=KEY_RECORD_TTL)
        return loaded

    def _remember_creator(self, key_id: uuid.UUID, creator_id: uuid.UUID) -> None:
        self._creators[key_id] = creator_id
        if len(self._creators) > MAX_REMEMBERED_KEYS:
            self._creators.pop(next(iter(self._creators)))

    async def _load_key(self, key_id: uuid.UUID) -> KeyRecord | None:
        tenant_id = await self.db.tenant_for_api_key(key_id)
        if tenant_id is None:
            return None
        async with self.db.tenant(tenant_id) as session:
            key = await ApiKeyRepository(session, tenant_id).get(key_id)
            if key is None:
                return None
            creator = await UserRepository(session, tenant_id).get_live(key.created_by)
        epoch = creator.session_epoch if creator else None
        await self.revocations.remember_epoch(key.created_by, epoch)
        return KeyRecord(
            tenant_id=tenant_id,
            secret_hash=key.secret_hash,
            scopes=list(key.scopes),
            expires_at=key.expires_at.timestamp() if key.expires_at else None,
            creator_id=key.created_by,
            creator_role=creator.role if creator else Role.VIEWER.value,
            creator_epoch=epoch_text(epoch),
            usable=key.revoked_at is None and creator is not None and not creator.disabled,
        )

    async def _record_use(self, tenant_id: uuid.UUID, key_id: uuid.UUID, ctx: AuditContext) -> None:
        async with self.db.tenant(tenant_id) as session:
            await ApiKeyRepository(session, tenant_id).touch(key_id, datetime.now(UTC))
            await self.audit.record(
                session,
                tenant_id,
                ctx,
                action="api_key.use",
                outcome="success",
                actor=Actor("api_key", str(key_id)),
                target=Target("api_key", str(key_id)),
            )


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return None


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
                else:
                    # A browser: the session cookie, and on unsafe methods the CSRF token it must echo.
                    session_id = cookie_value(_header(scope, b"cookie"))
                    if session_id is not None:
                        principal, session = await scope["app"].state.authenticator.session(session_id)
                        if scope["method"] in UNSAFE_METHODS and not csrf_matches(
                            session, _header(scope, CSRF_HEADER.encode())
                        ):
                            raise CsrfFailed("unsafe requests with the session cookie need X-CSRF-Token")
                        scope["user"] = principal
        await self.app(scope, receive, send)
