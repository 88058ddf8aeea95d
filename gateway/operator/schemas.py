"""msgspec bodies of tenant creation."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import msgspec

Slug = Annotated[str, msgspec.Meta(min_length=2, max_length=63, pattern=r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$")]


class TenantCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    slug: Slug
    admin_email: Annotated[str, msgspec.Meta(min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")]
    admin_password: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]


class TenantCreated(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    name: str
    slug: str
    admin_user_id: uuid.UUID
    created_at: datetime
