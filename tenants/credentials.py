"""Opaque credentials: API keys `fg_<id>_<secret>` and refresh tokens `fgr_<id>_<secret>`.

The id finds the row, the secret (256 bits from `secrets`) proves possession. Only SHA-256 of the secret
is stored: with that much entropy a slow hash buys nothing, and a fast one keeps every request cheap.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid

import msgspec

API_KEY_PREFIX = "fg"
REFRESH_PREFIX = "fgr"
_PATTERN = re.compile(r"(fg|fgr)_([0-9a-f]{32})_([A-Za-z0-9_-]{43})")


class OpaqueCredential(msgspec.Struct, frozen=True):
    prefix: str
    id: uuid.UUID
    secret: str

    def __str__(self) -> str:
        return f"{self.prefix}_{self.id.hex}_{self.secret}"


def new_credential(prefix: str) -> OpaqueCredential:
    return OpaqueCredential(prefix, uuid.uuid4(), secrets.token_urlsafe(32))


def parse_credential(raw: str, prefix: str) -> OpaqueCredential | None:
    """The parsed credential, or None when `raw` is not one of `prefix`'s shape."""
    m = _PATTERN.fullmatch(raw)
    if m is None or m.group(1) != prefix:
        return None
    return OpaqueCredential(prefix, uuid.UUID(hex=m.group(2)), m.group(3))


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def matches(secret: str, stored_digest: str) -> bool:
    return hmac.compare_digest(digest(secret), stored_digest)


def looks_like_api_key(raw: str) -> bool:
    return raw.startswith(API_KEY_PREFIX + "_")
