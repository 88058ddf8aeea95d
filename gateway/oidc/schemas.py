"""Identity providers as the API shows them: the client secret is write-only."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

import msgspec

from tenants.inputs import Line, Text, anchored

Domain = Annotated[
    str,
    msgspec.Meta(
        pattern=anchored(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+")
    ),
]
Origin = Annotated[
    str, msgspec.Meta(pattern=anchored(r"https?://[a-z0-9.\-]+(:[0-9]{1,5})?"), max_length=300)
]

GOOGLE_ISSUER = "https://accounts.google.com"


class ProviderIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """PUT /v1/identity-providers/{name}: create or replace. `preset: google` fills Google's issuer."""

    client_id: Annotated[Line, msgspec.Meta(min_length=1, max_length=512)]
    client_secret: Annotated[Text, msgspec.Meta(min_length=1, max_length=4096)] | None = None
    issuer: (
        Annotated[str, msgspec.Meta(pattern=anchored(r"https?://[^\s?#\x00-\x1f\x7f-\x9f]+"), max_length=512)]
        | None
    ) = None
    preset: Literal["google"] | None = None
    allowed_domains: Annotated[list[Domain], msgspec.Meta(max_length=100)] = msgspec.field(
        default_factory=list
    )
    default_role: Literal["manager", "user", "viewer"] = "viewer"
    create_users: bool = False
    redirect_origins: Annotated[list[Origin], msgspec.Meta(max_length=50)] = msgspec.field(
        default_factory=list
    )


class ProviderOut(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    name: str
    issuer: str
    client_id: str
    client_secret_set: bool
    allowed_domains: list[str]
    default_role: str
    create_users: bool
    redirect_origins: list[str]
    login_url: str
    callback_url: str
    created_at: datetime
    updated_at: datetime


class ProviderList(msgspec.Struct):
    items: list[ProviderOut]
