"""Connections as the API shows them: config yes, secrets never (only their field names)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

import msgspec

from connectors.schemas import Name
from tenants.inputs import Text


class ConnectionOut(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    name: str
    kind: str
    config: dict[str, Any]
    secret_fields: list[str]
    created_at: datetime
    updated_at: datetime


class ConnectionPage(msgspec.Struct):
    items: list[ConnectionOut]
    next_cursor: str | None


class ConnectionPatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """`config` replaces the whole config; `secrets` replaces the whole secret set (a rotation)."""

    name: Name | msgspec.UnsetType = msgspec.UNSET
    config: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET
    secrets: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET


class ConnectionTest(msgspec.Struct):
    ok: bool
    detail: str


class ObjectOut(msgspec.Struct):
    key: str
    size: int
    modified_at: datetime | None


class ObjectPage(msgspec.Struct):
    items: list[ObjectOut]
    next_cursor: str | None


class InstagramMediaIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    upload_id: uuid.UUID
    caption: Annotated[Text, msgspec.Meta(max_length=2200)] | None = None


class InstagramMediaOut(msgspec.Struct, kw_only=True):
    upload_id: uuid.UUID
    media_id: str
    container_id: str
