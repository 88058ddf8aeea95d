"""API keys: created with scopes the creator holds, stored hashed, shown once, revocable."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.api_keys.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyOut, ApiKeyPage
from gateway.audit import AuditContext, AuditRecorder, Target
from gateway.errors import Forbidden, NotFound, ValidationFailed
from gateway.security.authn import Revocations
from gateway.security.principal import Principal
from tenants import credentials
from tenants.models import ApiKey
from tenants.permissions import Permission, Reach, parse_scopes
from tenants.repository import ApiKeyRepository, InvalidCursor

DEFAULT_LIFETIME = timedelta(days=90)
MAX_LIFETIME = timedelta(days=730)


def key_out(key: ApiKey) -> ApiKeyOut:
    return ApiKeyOut(
        id=key.id,
        name=key.name,
        scopes=list(key.scopes),
        created_by=key.created_by,
        expires_at=key.expires_at,
        last_used_at=key.last_used_at,
        revoked=key.revoked_at is not None,
        created_at=key.created_at,
    )


class ApiKeyService:
    def __init__(self, *, audit: AuditRecorder, revocations: Revocations) -> None:
        self.audit = audit
        self.revocations = revocations

    def _visible(self, principal: Principal, repo: ApiKeyRepository) -> Select[ApiKey]:
        stmt = repo.select()
        if principal.reach(Permission.API_KEYS_MANAGE) is not Reach.ANY:
            stmt = stmt.where(ApiKey.created_by == principal.user_id)
        return stmt

    async def list(
        self, session: AsyncSession, principal: Principal, *, limit: int | None, cursor: str | None
    ) -> ApiKeyPage:
        repo = ApiKeyRepository(session, principal.tenant_id)
        try:
            items, next_cursor = await repo.page(self._visible(principal, repo), limit=limit, cursor=cursor)
        except InvalidCursor:
            raise ValidationFailed("cursor is malformed") from None
        return ApiKeyPage(items=[key_out(k) for k in items], next_cursor=next_cursor)

    async def create(
        self, session: AsyncSession, principal: Principal, data: ApiKeyCreate, ctx: AuditContext
    ) -> ApiKeyCreated:
        try:
            scopes = sorted(set(parse_scopes(data.scopes)))
        except ValueError as exc:
            raise ValidationFailed(str(exc)) from None
        beyond = [s.value for s in scopes if principal.reach(s) is None]
        if beyond:
            raise Forbidden(
                "an API key cannot hold permissions its creator does not hold: " + ", ".join(beyond)
            )
        now = datetime.now(UTC)
        expires_at = data.expires_at or now + DEFAULT_LIFETIME
        if expires_at.tzinfo is None:
            raise ValidationFailed("expires_at must carry a timezone (RFC 3339)")
        if expires_at <= now or expires_at > now + MAX_LIFETIME:
            raise ValidationFailed("expires_at must be in the future and at most two years away")
        cred = credentials.new_credential(credentials.API_KEY_PREFIX)
        key = await ApiKeyRepository(session, principal.tenant_id).add(
            ApiKey(
                id=cred.id,
                created_by=principal.user_id,
                name=data.name,
                secret_hash=credentials.digest(cred.secret),
                scopes=[s.value for s in scopes],
                expires_at=expires_at,
                created_at=now,
            )
        )
        await self.audit.record(
            session,
            principal.tenant_id,
            ctx,
            action="api_key.create",
            outcome="success",
            actor=principal.actor,
            target=Target("api_key", str(key.id)),
            details={"scopes": key.scopes},
        )
        return ApiKeyCreated(
            id=key.id,
            key=str(cred),
            name=key.name,
            scopes=key.scopes,
            expires_at=key.expires_at,
            created_at=now,
        )

    async def revoke(
        self, session: AsyncSession, principal: Principal, key_id: uuid.UUID, ctx: AuditContext
    ) -> None:
        keys = ApiKeyRepository(session, principal.tenant_id)
        key = await keys.get(key_id)
        # A key the caller may not manage is answered exactly like one that does not exist.
        if key is None or not principal.may(Permission.API_KEYS_MANAGE, owner_id=key.created_by):
            raise NotFound()
        # Revoking a revoked key (or one another request is revoking right now) changes and records nothing.
        if await keys.revoke(key.id, datetime.now(UTC)):
            # Before commit: the very next request with this key fails, whichever replica serves it.
            await self.revocations.revoke_api_key(key.id, key.expires_at)
            await self.audit.record(
                session,
                principal.tenant_id,
                ctx,
                action="api_key.revoke",
                outcome="success",
                actor=principal.actor,
                target=Target("api_key", str(key.id)),
            )
