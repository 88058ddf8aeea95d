"""HTTP routes of user administration."""

from __future__ import annotations

import uuid

from litestar import Controller, delete, get, patch, post
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.audit import AuditContext
from gateway.security.guards import authenticated, owned_or_any, requires_any
from gateway.security.principal import Principal
from gateway.users.schemas import PasswordChange, UserCreate, UserOut, UserPage, UserUpdate
from gateway.users.service import UserService
from tenants.permissions import Permission

Limit = Parameter(ge=1, le=100_000, required=False)


class UserController(Controller):
    path = "/v1/users"
    tags = ["users"]

    @get("/", guards=[requires_any(Permission.USERS_READ)])
    async def list_users(
        self,
        users: UserService,
        principal: Principal,
        session: AsyncSession,
        limit: int | None = Limit,
        cursor: str | None = None,
    ) -> UserPage:
        return await users.list(session, principal, limit=limit, cursor=cursor)

    @post("/", guards=[requires_any(Permission.USERS_WRITE)], status_code=201)
    async def create_user(
        self,
        data: UserCreate,
        users: UserService,
        principal: Principal,
        session: AsyncSession,
        ctx: AuditContext,
    ) -> UserOut:
        return await users.create(session, principal, data, ctx)

    @get("/{user_id:uuid}", guards=[owned_or_any(Permission.USERS_READ)])
    async def get_user(
        self, user_id: uuid.UUID, users: UserService, principal: Principal, session: AsyncSession
    ) -> UserOut:
        return await users.get(session, user_id, principal)

    @patch("/{user_id:uuid}", guards=[requires_any(Permission.USERS_WRITE)])
    async def update_user(
        self,
        user_id: uuid.UUID,
        data: UserUpdate,
        users: UserService,
        principal: Principal,
        session: AsyncSession,
        ctx: AuditContext,
    ) -> UserOut:
        return await users.update(session, principal, user_id, data, ctx)

    @delete("/{user_id:uuid}", guards=[requires_any(Permission.USERS_WRITE)], status_code=204)
    async def delete_user(
        self,
        user_id: uuid.UUID,
        users: UserService,
        principal: Principal,
        session: AsyncSession,
        ctx: AuditContext,
    ) -> None:
        await users.erase(session, principal, user_id, ctx)


@post(
    "/v1/me/password",
    guards=[authenticated],
    status_code=204,
    tags=["identity"],
    summary="Change your password; every session of yours is revoked",
)
async def change_password(
    data: PasswordChange, users: UserService, principal: Principal, session: AsyncSession, ctx: AuditContext
) -> None:
    await users.change_password(session, principal, data.current_password, data.new_password, ctx)
