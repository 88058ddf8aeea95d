"""msgspec bodies of the user routes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import msgspec

from tenants.inputs import Email
from tenants.models import Role

Password = Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]  # hashed, never stored as text


class UserCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    email: Email
    role: Role
    password: Password | None = None


class UserUpdate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    role: Role | msgspec.UnsetType = msgspec.UNSET
    disabled: bool | msgspec.UnsetType = msgspec.UNSET


class PasswordChange(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    current_password: Password
    new_password: Password


class UserOut(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    email: str | None
    role: str
    disabled: bool
    created_at: datetime


class UserPage(msgspec.Struct):
    items: list[UserOut]
    next_cursor: str | None
