"""msgspec bodies of tenant creation."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import msgspec

from tenants.inputs import Email, Line, Slug


class TenantCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: Annotated[Line, msgspec.Meta(min_length=1, max_length=200)]
    slug: Slug
    admin_email: Email
    admin_password: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]  # hashed


class TenantCreated(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    name: str
    slug: str
    admin_user_id: uuid.UUID
    created_at: datetime
