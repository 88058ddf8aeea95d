"""All SQL of the tenants package, built on one tenant-scoped base.

`TenantRepository.select()` always filters `tenant_id` on top of row-level security, so a forgotten filter
in a query is impossible rather than merely caught by RLS.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, ClassVar, Generic, TypeVar

import msgspec
from sqlalchemy import Select, func, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from tenants.inputs import instant, int64
from tenants.models import ApiKey, RecoveryCode, RefreshToken, Role, Tenant, TenantPolicy, User

M = TypeVar("M")

MAX_PAGE = 500
DEFAULT_PAGE = 50


class InvalidCursor(ValueError):
    pass


def clamp_limit(limit: int | None) -> int:
    if limit is None or limit <= 0:
        return DEFAULT_PAGE
    return min(limit, MAX_PAGE)


def encode_cursor(*values: Any) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode(values)).decode().rstrip("=")


def decode_cursor(cursor: str, *types: type) -> tuple[Any, ...]:
    """The values of a cursor we encoded; a hand-made one must still hold values the database can take."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = msgspec.json.decode(raw, type=list[Any])
        if len(values) != len(types):
            raise InvalidCursor("cursor is malformed")
        return tuple(
            _storable(msgspec.convert(v, t, strict=True)) for v, t in zip(values, types, strict=True)
        )
    except (ValueError, msgspec.DecodeError, msgspec.ValidationError):
        raise InvalidCursor("cursor is malformed") from None


def _storable(value: Any) -> Any:
    # InvalidInput is a ValueError: the caller's handler turns it into InvalidCursor.
    if isinstance(value, datetime):
        return instant(value, "cursor")
    if isinstance(value, int) and not isinstance(value, bool):
        return int64(value, "cursor")
    return value


class TenantRepository(Generic[M]):
    model: ClassVar[type[Any]]

    def __init__(self, session: AsyncSession, tenant_id: uuid.UUID) -> None:
        self.session = session
        self.tenant_id = tenant_id

    def select(self) -> Select[M]:
        return select(self.model).where(self.model.tenant_id == self.tenant_id)

    async def get(self, id_: uuid.UUID) -> M | None:
        result = await self.session.execute(self.select().where(self.model.id == id_))
        return result.scalar_one_or_none()

    async def add(self, obj: M) -> M:
        obj.tenant_id = self.tenant_id  # type: ignore[attr-defined]
        self.session.add(obj)
        await self.session.flush()
        return obj

    async def page(
        self, stmt: Select[M], *, limit: int | None, cursor: str | None
    ) -> tuple[Sequence[M], str | None]:
        """Keyset paging on (created_at, id), newest first."""
        n = clamp_limit(limit)
        model = self.model
        if cursor:
            at, last_id = decode_cursor(cursor, datetime, uuid.UUID)
            stmt = stmt.where(tuple_(model.created_at, model.id) < tuple_(at, last_id))
        rows = await self.session.execute(
            stmt.order_by(model.created_at.desc(), model.id.desc()).limit(n + 1)
        )
        items = list(rows.scalars().all())
        next_cursor = None
        if len(items) > n:
            items = items[:n]
            last: Any = items[-1]
            next_cursor = encode_cursor(last.created_at, last.id)
        return items, next_cursor


class TenantRecordRepository:
    """The `tenants` row itself (RLS lets a session see only its own tenant's row)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, tenant: Tenant) -> Tenant:
        self.session.add(tenant)
        await self.session.flush()
        return tenant

    async def get(self, tenant_id: uuid.UUID) -> Tenant | None:
        return await self.session.get(Tenant, tenant_id)


class UserRepository(TenantRepository[User]):
    model = User

    async def by_email(self, email: str) -> User | None:
        result = await self.session.execute(self.select().where(User.email == email))
        return result.scalar_one_or_none()

    def live(self) -> Select[User]:
        return self.select().where(User.erased_at.is_(None))

    async def get_live(self, user_id: uuid.UUID) -> User | None:
        result = await self.session.execute(self.live().where(User.id == user_id))
        return result.scalar_one_or_none()

    async def lock(self, user_id: uuid.UUID) -> User | None:
        result = await self.session.execute(self.live().where(User.id == user_id).with_for_update())
        return result.scalar_one_or_none()

    async def count_active_admins(self) -> int:
        stmt = (
            select(func.count())
            .select_from(User)
            .where(
                User.tenant_id == self.tenant_id,
                User.role == Role.ADMIN.value,
                User.disabled.is_(False),
                User.erased_at.is_(None),
            )
        )
        return int((await self.session.execute(stmt)).scalar_one())


class RefreshTokenRepository(TenantRepository[RefreshToken]):
    model = RefreshToken

    async def lock(self, token_id: uuid.UUID) -> RefreshToken | None:
        result = await self.session.execute(
            self.select().where(RefreshToken.id == token_id).with_for_update()
        )
        return result.scalar_one_or_none()

    async def revoke_family(self, family_id: uuid.UUID, at: datetime) -> None:
        await self.session.execute(
            update(RefreshToken)
            .where(
                RefreshToken.tenant_id == self.tenant_id,
                RefreshToken.family_id == family_id,
                RefreshToken.revoked_at.is_(None),
            )
            .values(revoked_at=at)
        )

    async def revoke_user(self, user_id: uuid.UUID, at: datetime) -> None:
        await self.session.execute(
            update(RefreshToken)
            .where(
                RefreshToken.tenant_id == self.tenant_id,
                RefreshToken.user_id == user_id,
                RefreshToken.revoked_at.is_(None),
            )
            .values(revoked_at=at)
        )


class RecoveryCodeRepository(TenantRepository[RecoveryCode]):
    model = RecoveryCode

    async def replace(self, user_id: uuid.UUID, digests: list[str]) -> None:
        await self.session.execute(
            RecoveryCode.__table__.delete().where(  # type: ignore[attr-defined]
                RecoveryCode.tenant_id == self.tenant_id, RecoveryCode.user_id == user_id
            )
        )
        for d in digests:
            self.session.add(RecoveryCode(tenant_id=self.tenant_id, user_id=user_id, code_hash=d))
        await self.session.flush()

    async def consume(self, user_id: uuid.UUID, code_digest: str, at: datetime) -> bool:
        result = await self.session.execute(
            update(RecoveryCode)
            .where(
                RecoveryCode.tenant_id == self.tenant_id,
                RecoveryCode.user_id == user_id,
                RecoveryCode.code_hash == code_digest,
                RecoveryCode.used_at.is_(None),
            )
            .values(used_at=at)
            .returning(RecoveryCode.id)
        )
        return result.first() is not None


class ApiKeyRepository(TenantRepository[ApiKey]):
    model = ApiKey

    async def touch(self, key_id: uuid.UUID, at: datetime) -> None:
        await self.session.execute(
            update(ApiKey)
            .where(ApiKey.tenant_id == self.tenant_id, ApiKey.id == key_id)
            .values(last_used_at=at)
        )

    async def revoke_by_creator(self, user_id: uuid.UUID, at: datetime) -> None:
        await self.session.execute(
            update(ApiKey)
            .where(
                ApiKey.tenant_id == self.tenant_id, ApiKey.created_by == user_id, ApiKey.revoked_at.is_(None)
            )
            .values(revoked_at=at)
        )


class PolicyRepository:
    def __init__(self, session: AsyncSession, tenant_id: uuid.UUID) -> None:
        self.session = session
        self.tenant_id = tenant_id

    async def get(self, *, for_update: bool = False) -> TenantPolicy | None:
        stmt = select(TenantPolicy).where(TenantPolicy.tenant_id == self.tenant_id)
        if for_update:
            stmt = stmt.with_for_update()
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def add(self, policy: TenantPolicy) -> None:
        policy.tenant_id = self.tenant_id
        self.session.add(policy)
        await self.session.flush()
