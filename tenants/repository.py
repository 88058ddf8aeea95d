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
from sqlalchemy import Select, exists, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

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

    async def session_epoch(self, user_id: uuid.UUID) -> int | None:
        """The user's session epoch; None for a user who is gone (erased or never here)."""
        result = await self.session.execute(
            self.live().with_only_columns(User.session_epoch).where(User.id == user_id)
        )
        return result.scalar_one_or_none()

    async def raise_session_epoch(self, user_id: uuid.UUID) -> int | None:
        """Move the user's session epoch on (revoking everything issued under the old one); the new epoch."""
        result = await self.session.execute(
            update(User)
            .where(User.tenant_id == self.tenant_id, User.id == user_id)
            .values(session_epoch=User.session_epoch + 1)
            .returning(User.session_epoch)
        )
        return result.scalar_one_or_none()

    async def accept_totp_step(self, user_id: uuid.UUID, step: int) -> bool:
        """Compare-and-set: record `step` as the user's last accepted TOTP step only if it is newer than the one
        stored. Logins presenting the same code at once all read the old step; this lets exactly one of them
        through, on every replica, whatever Redis holds."""
        result = await self.session.execute(
            update(User)
            .where(User.tenant_id == self.tenant_id, User.id == user_id, User.totp_last_step < step)
            .values(totp_last_step=step)
            .returning(User.id)
        )
        return result.first() is not None

    async def lock_active_admins(self) -> int:
        """Lock the tenant's active admins, in id order, until commit; answers how many there are.

        Taken before any other user row by every change that could take an admin away, so two of them
        (two admins demoting or erasing each other) run one after the other, and the second counts what
        the first left. The one order keeps them from deadlocking.
        """
        stmt = (
            select(User.id)
            .where(
                User.tenant_id == self.tenant_id,
                User.role == Role.ADMIN.value,
                User.disabled.is_(False),
                User.erased_at.is_(None),
            )
            .order_by(User.id)
            .with_for_update()
        )
        return len((await self.session.execute(stmt)).all())


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

    async def family_revoked(self, family_id: uuid.UUID) -> bool:
        """Was the family revoked (logout, reuse, the user's sessions)? Rotation only spends, never revokes."""
        stmt = select(
            exists().where(
                RefreshToken.tenant_id == self.tenant_id,
                RefreshToken.family_id == family_id,
                RefreshToken.revoked_at.is_not(None),
            )
        )
        return bool((await self.session.execute(stmt)).scalar_one())

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

    async def lock(self, key_id: uuid.UUID, *, shared: bool = False) -> ApiKey | None:
        """The key, locked: FOR UPDATE to revoke it, FOR SHARE to create a child under it (a revocation then
        waits for the child's commit, and its next statement sees the child)."""
        stmt = self.select().where(ApiKey.id == key_id).with_for_update(read=shared)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def revoke_tree(self, key_id: uuid.UUID, at: datetime) -> list[tuple[uuid.UUID, datetime | None]]:
        """Revoke the key and every key descended from it; (id, expires_at) of those this revoked."""
        tree = (
            select(ApiKey.id)
            .where(ApiKey.tenant_id == self.tenant_id, ApiKey.id == key_id)
            .cte("tree", recursive=True)
        )
        child = aliased(ApiKey)
        tree = tree.union_all(
            select(child.id).where(child.tenant_id == self.tenant_id, child.parent_id == tree.c.id)
        )
        result = await self.session.execute(
            update(ApiKey)
            .where(
                ApiKey.tenant_id == self.tenant_id,
                ApiKey.id.in_(select(tree.c.id)),
                ApiKey.revoked_at.is_(None),
            )
            .values(revoked_at=at)
            .returning(ApiKey.id, ApiKey.expires_at)
            .execution_options(synchronize_session="fetch")
        )
        return [(row[0], row[1]) for row in result.all()]

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
