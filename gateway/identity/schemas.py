"""msgspec bodies of the identity routes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import msgspec

# A login's tenant and email are only bounded here: the login service checks their characters, so a
# refused login counts toward the lockout and lands in the audit log like any other failed one.
LoginEmail = Annotated[str, msgspec.Meta(min_length=1, max_length=320)]
LoginSlug = Annotated[str, msgspec.Meta(min_length=1, max_length=63)]
# Bounded: the password policy's own ceiling is lower; this stops megabyte passwords reaching argon2.
# Any character is allowed: a password is hashed, never stored or logged as text.
Password = Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]
OpaqueToken = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


class LoginRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    tenant: LoginSlug
    email: LoginEmail
    password: Password
    totp: Annotated[str, msgspec.Meta(max_length=32)] | None = None


class TokenPair(msgspec.Struct, kw_only=True):
    access_token: str
    refresh_token: str
    token_type: str = "Bearer"
    expires_in: int


class RefreshRequest(msgspec.Struct, forbid_unknown_fields=True):
    refresh_token: OpaqueToken


class LogoutRequest(msgspec.Struct, forbid_unknown_fields=True):
    refresh_token: OpaqueToken | None = None  # a browser session signs out with its cookie alone


class SessionInfo(msgspec.Struct, kw_only=True):
    user_id: uuid.UUID
    tenant_id: uuid.UUID
    role: str
    csrf_token: str
    expires_at: datetime


class TotpEnrollment(msgspec.Struct):
    secret: str
    otpauth_uri: str


class TotpConfirm(msgspec.Struct, forbid_unknown_fields=True):
    code: Annotated[str, msgspec.Meta(min_length=1, max_length=16)]


class TotpConfirmed(msgspec.Struct):
    enabled: bool
    recovery_codes: list[str]


class Me(msgspec.Struct, kw_only=True):
    user_id: uuid.UUID
    tenant_id: uuid.UUID
    email: str | None
    role: str
    permissions: list[str]
