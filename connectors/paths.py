"""Confining client-supplied object keys to a tenant's root inside a connection.

A full key is `<tenant_id>/<base>/<key>`: the tenant's id first (every store is prefixed by tenant id),
then the connection's base path (S3/Azure `prefix`, SharePoint `folder`, local `base_path`), then the
client's key; whatever a base path names, it stays inside its tenant's prefix. The
client's key is refused, not repaired, when any reading of it could step outside: `.` or `..` segments,
absolute or empty segments, backslashes, control or bidi characters, and the same hidden behind
percent-encoding (any number of layers) or Unicode compatibility forms (fullwidth dots and slashes, the
two-dot leader...). One function decides, so every route and every connector agrees, and upload file
names are made to pass it at ingest (`check_segment`, `gateway/uploads/filenames.py`).
"""

from __future__ import annotations

import unicodedata
import uuid
from dataclasses import dataclass
from urllib.parse import unquote

from connectors.base import InvalidKey

MAX_KEY_BYTES = 1024
_BIDI = {chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C)}


def _refuse(reason: str) -> InvalidKey:
    return InvalidKey(f"the key is not allowed: {reason}")


def _check_layer(text: str, *, allow_trailing_slash: bool) -> None:
    for ch in text:
        if ch in _BIDI or (unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn") and ch != "\u200d"):
            raise _refuse("control or formatting characters")
    if "\\" in text:
        raise _refuse("backslash")
    if text.startswith("/"):
        raise _refuse("absolute key")
    body = text[:-1] if allow_trailing_slash and text.endswith("/") else text
    if not body:
        return
    for segment in body.split("/"):
        if segment == "":
            raise _refuse("empty path segment")
        if segment.strip() in (".", ".."):
            raise _refuse("dot segment")
        if segment != segment.strip():
            raise _refuse("leading or trailing spaces in a segment")


def check_relative(key: str, *, prefix: bool = False) -> str:
    """`key` if it is a safe key (or, with `prefix`, a safe listing prefix) inside a root; else InvalidKey."""
    if not prefix and not key:
        raise _refuse("empty key")
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise _refuse("longer than 1024 bytes")
    if not prefix and key.endswith("/"):
        raise _refuse("a key cannot end with '/'")
    layer = key
    for _ in range(4):
        _check_layer(layer, allow_trailing_slash=True)
        compat = unicodedata.normalize("NFKC", layer)
        if compat != layer:
            _check_layer(compat, allow_trailing_slash=True)
        decoded = unquote(layer)
        if decoded == layer:
            break
        layer = decoded
    else:
        raise _refuse("too many layers of percent-encoding")
    if unicodedata.normalize("NFC", key) != key:
        raise _refuse("not in Unicode normal form C")
    return key


def check_segment(name: str) -> str:
    """`name` if it is one safe key segment (a file name inside a folder); else InvalidKey."""
    if "/" in name:
        raise _refuse("a name cannot contain '/'")
    return check_relative(name)


def normalize_base(base: str | None) -> str:
    """A connection's configured base path as `a/b/` (or empty); refused like a key if unsafe."""
    base = (base or "").strip("/")
    if not base:
        return ""
    check_relative(base)
    return base + "/"


@dataclass(frozen=True, slots=True)
class ObjectRoot:
    """Where one tenant's objects live inside one connection."""

    tenant_id: uuid.UUID
    base: str = ""  # normalized: "" or "a/b/"

    @classmethod
    def of(cls, tenant_id: uuid.UUID, base: str | None) -> ObjectRoot:
        return cls(tenant_id, normalize_base(base))

    @property
    def prefix(self) -> str:
        return f"{self.tenant_id}/{self.base}"

    def key(self, relative: str) -> str:
        """The full key of a client key; InvalidKey if it could leave the root or is longer than stores take."""
        full = self.prefix + check_relative(relative)
        if len(full.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
            raise _refuse("longer than 1024 bytes with the connection's root")
        return full

    def listing_prefix(self, relative: str) -> str:
        return self.prefix + check_relative(relative, prefix=True)

    def relative(self, full: str) -> str | None:
        """The client's view of a full key, or None for a key outside this root (never shown)."""
        if not full.startswith(self.prefix) or len(full) == len(self.prefix):
            return None
        return full[len(self.prefix) :]
