"""msgspec bodies of the API key routes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import msgspec

from tenants.inputs import Line

Scope = Annotated[Line, msgspec.Meta(min_length=1, max_length=64)]


class ApiKeyCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: Annotated[Line, msgspec.Meta(min_length=1, max_length=200)]
    scopes: Annotated[list[Scope], msgspec.Meta(min_length=1, max_length=64)]
    expires_at: datetime | None = None


class ApiKeyOut(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    name: str
    scopes: list[str]
    created_by: uuid.UUID
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked: bool
    created_at: datetime


class ApiKeyCreated(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    key: str
    name: str
    scopes: list[str]
    expires_at: datetime | None
    created_at: datetime


class ApiKeyPage(msgspec.Struct):
    items: list[ApiKeyOut]
    next_cursor: str | None
