"""API keys: created with scopes the creator holds, stored hashed, shown once, revocable.

A key may create keys (with `api_keys.manage`): such a child records its parent, never outlives it and is
revoked with it, so revoking a leaked key also kills whatever was minted with it.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.api_keys.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyOut, ApiKeyPage
from gateway.audit import AuditContext, AuditRecorder, Target
from gateway.errors import Forbidden, InvalidToken, NotFound, ValidationFailed
from gateway.security.principal import Principal
from gateway.security.revocation import Revocations
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
        repo = ApiKeyRepository(session, principal.tenant_id)
        parent = await self._parent(repo, principal, now)
        latest = now + MAX_LIFETIME
        if parent is not None and parent.expires_at is not None:
            latest = min(latest, parent.expires_at)
        expires_at = data.expires_at or min(now + DEFAULT_LIFETIME, latest)
        if expires_at.tzinfo is None:
            raise ValidationFailed("expires_at must carry a timezone (RFC 3339)")
        if expires_at <= now or expires_at > now + MAX_LIFETIME:
            raise ValidationFailed("expires_at must be in the future and at most two years away")
        if expires_at > latest:
            raise ValidationFailed("expires_at must not be later than that of the key creating this one")
        cred = credentials.new_credential(credentials.API_KEY_PREFIX)
        key = await repo.add(
            ApiKey(
                id=cred.id,
                created_by=principal.user_id,
                parent_id=parent.id if parent is not None else None,
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

    @staticmethod
    async def _parent(repo: ApiKeyRepository, principal: Principal, now: datetime) -> ApiKey | None:
        """The key creating this one, locked against its revocation until this transaction ends."""
        if principal.api_key_id is None:
            return None
        parent = await repo.lock(principal.api_key_id, shared=True)
        if (
            parent is None
            or parent.revoked_at is not None
            or (parent.expires_at is not None and parent.expires_at <= now)
        ):
            raise InvalidToken()
        return parent

    async def revoke(
        self, session: AsyncSession, principal: Principal, key_id: uuid.UUID, ctx: AuditContext
    ) -> None:
        repo = ApiKeyRepository(session, principal.tenant_id)
        # Locked first: a child being created under this key commits before the next statement looks.
        key = await repo.lock(key_id)
        # A key the caller may not manage is answered exactly like one that does not exist.
        if key is None or not principal.may(Permission.API_KEYS_MANAGE, owner_id=key.created_by):
            raise NotFound()
        if key.revoked_at is None:
            revoked = await repo.revoke_tree(key.id, datetime.now(UTC))
            # Before commit too: the very next request with any of them fails, whichever replica serves it.
            await self.revocations.revoke_api_keys(session, revoked)
            await self.audit.record(
                session,
                principal.tenant_id,
                ctx,
                action="api_key.revoke",
                outcome="success",
                actor=principal.actor,
                target=Target("api_key", str(key.id)),
                details={"descendants_revoked": sum(1 for i, _ in revoked if i != key.id)},
            )
