"""User administration. Role changes, disabling and erasure revoke every session of the user."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import msgspec
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.audit import AuditContext, AuditRecorder, Target
from gateway.errors import Conflict, InvalidCredentials, NotFound, ValidationFailed
from gateway.identity.profile import ProfileCache
from gateway.security.principal import Principal
from gateway.security.revocation import Revocations
from gateway.users.schemas import UserCreate, UserOut, UserPage, UserUpdate
from tenants.inputs import normalize_email
from tenants.models import Role, User
from tenants.passwords import PasswordHashing, PasswordPolicyError, check_policy
from tenants.repository import (
    ApiKeyRepository,
    InvalidCursor,
    RecoveryCodeRepository,
    UserRepository,
)


def user_out(user: User) -> UserOut:
    return UserOut(
        id=user.id, email=user.email, role=user.role, disabled=user.disabled, created_at=user.created_at
    )


def checked_password(password: str, *, email: str) -> str:
    try:
        check_policy(password, context=(email, email.split("@")[0]))
    except PasswordPolicyError as exc:
        raise ValidationFailed(str(exc)) from None
    return password


class UserService:
    def __init__(
        self,
        *,
        hashing: PasswordHashing,
        revocations: Revocations,
        audit: AuditRecorder,
        profiles: ProfileCache,
    ) -> None:
        self.hashing = hashing
        self.revocations = revocations
        self.audit = audit
        self.profiles = profiles

    async def list(
        self, session: AsyncSession, principal: Principal, *, limit: int | None, cursor: str | None
    ) -> UserPage:
        users = UserRepository(session, principal.tenant_id)
        try:
            items, next_cursor = await users.page(users.live(), limit=limit, cursor=cursor)
        except InvalidCursor:
            raise ValidationFailed("cursor is malformed") from None
        return UserPage(items=[user_out(u) for u in items], next_cursor=next_cursor)

    async def create(
        self, session: AsyncSession, principal: Principal, data: UserCreate, ctx: AuditContext
    ) -> UserOut:
        email = normalize_email(data.email)
        password_hash = None
        if data.password is not None:
            password_hash = await self.hashing.hash(checked_password(data.password, email=email))
        users = UserRepository(session, principal.tenant_id)
        try:
            async with session.begin_nested():
                user = await users.add(User(email=email, role=data.role.value, password_hash=password_hash))
        except IntegrityError:
            raise Conflict("a user with this email already exists") from None
        await self.audit.record(
            session,
            principal.tenant_id,
            ctx,
            action="user.create",
            outcome="success",
            actor=principal.actor,
            target=Target("user", str(user.id)),
            details={"role": user.role},
        )
        await session.refresh(user)
        return user_out(user)

    async def get(self, session: AsyncSession, user_id: uuid.UUID, principal: Principal) -> UserOut:
        user = await UserRepository(session, principal.tenant_id).get_live(user_id)
        if user is None:
            raise NotFound()
        return user_out(user)

    async def update(
        self,
        session: AsyncSession,
        principal: Principal,
        user_id: uuid.UUID,
        data: UserUpdate,
        ctx: AuditContext,
    ) -> UserOut:
        users = UserRepository(session, principal.tenant_id)
        admins = await users.lock_active_admins()  # before the user's row: see lock_active_admins
        user = await users.lock(user_id)
        if user is None:
            raise NotFound()
        changes: dict[str, dict[str, object]] = {}
        if not isinstance(data.role, msgspec.UnsetType) and data.role.value != user.role:
            changes["role"] = {"from": user.role, "to": data.role.value}
        if not isinstance(data.disabled, msgspec.UnsetType) and data.disabled != user.disabled:
            changes["disabled"] = {"from": user.disabled, "to": data.disabled}
        if not changes:
            return user_out(user)
        loses_admin = (
            user.role == Role.ADMIN.value
            and not user.disabled
            and (("role" in changes) or changes.get("disabled", {}).get("to") is True)
        )
        if loses_admin and admins <= 1:
            raise Conflict("the tenant's last active admin cannot be demoted or disabled")
        if "role" in changes:
            user.role = str(changes["role"]["to"])
        if "disabled" in changes:
            user.disabled = bool(changes["disabled"]["to"])
        await self._revoke_sessions(session, principal.tenant_id, user.id)
        await self.audit.record(
            session,
            principal.tenant_id,
            ctx,
            action="user.update",
            outcome="success",
            actor=principal.actor,
            target=Target("user", str(user.id)),
            details={"changes": changes, "sessions_revoked": True},
        )
        await session.flush()
        await session.refresh(user)
        return user_out(user)

    async def erase(
        self, session: AsyncSession, principal: Principal, user_id: uuid.UUID, ctx: AuditContext
    ) -> None:
        """Remove personal data; the id stays as a pseudonym in the audit log."""
        users = UserRepository(session, principal.tenant_id)
        admins = await users.lock_active_admins()  # before the user's row: see lock_active_admins
        user = await users.lock(user_id)
        if user is None:
            raise NotFound()
        if user.role == Role.ADMIN.value and not user.disabled and admins <= 1:
            raise Conflict("the tenant's last active admin cannot be deleted")
        now = datetime.now(UTC)
        user.email = None
        user.password_hash = None
        user.totp_secret = None
        user.totp_enabled = False
        user.disabled = True
        user.erased_at = now
        await RecoveryCodeRepository(session, principal.tenant_id).replace(user.id, [])
        await ApiKeyRepository(session, principal.tenant_id).revoke_by_creator(user.id, now)
        await self._revoke_sessions(session, principal.tenant_id, user.id)
        await self.audit.record(
            session,
            principal.tenant_id,
            ctx,
            action="user.delete",
            outcome="success",
            actor=principal.actor,
            target=Target("user", str(user.id)),
            details={"erased": True},
        )

    async def change_password(
        self, session: AsyncSession, principal: Principal, current: str, new: str, ctx: AuditContext
    ) -> None:
        user = await UserRepository(session, principal.tenant_id).lock(principal.user_id)
        if user is None:
            raise NotFound()
        if not await self.hashing.verify(user.password_hash, current):
            raise InvalidCredentials("the current password is wrong")
        user.password_hash = await self.hashing.hash(checked_password(new, email=user.email or ""))
        await self._revoke_sessions(session, principal.tenant_id, user.id)
        await self.audit.record(
            session,
            principal.tenant_id,
            ctx,
            action="user.update",
            outcome="success",
            actor=principal.actor,
            target=Target("user", str(user.id)),
            details={"changes": {"password": "changed"}, "sessions_revoked": True},
        )

    async def _revoke_sessions(self, session: AsyncSession, tenant_id: uuid.UUID, user_id: uuid.UUID) -> None:
        # In this transaction (the user's session epoch moves on) and in the cache before and after commit.
        await self.revocations.revoke_user(session, tenant_id, user_id)
        self.profiles.forget(user_id)
