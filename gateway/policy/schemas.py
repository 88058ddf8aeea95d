"""The upload policy as the API shows it."""

from __future__ import annotations

import re
from typing import Annotated, Literal
from urllib.parse import urlsplit

import msgspec

from tenants.inputs import anchored

GLOBAL_MAX_FILE_SIZE = 5 * 1024**3  # the ceiling no tenant may raise its limit above
MimePattern = Annotated[
    str,
    msgspec.Meta(
        max_length=255,
        pattern=anchored(r"(\*/\*|[a-z0-9][a-z0-9!#$&^_.+-]*/(\*|[a-z0-9][a-z0-9!#$&^_.+-]*))"),
    ),
]
Origin = Annotated[
    str, msgspec.Meta(max_length=255, pattern=anchored(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?"))
]
_LABEL = re.compile(r"\A[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\Z")
_LOOPBACK = ("localhost", "127.0.0.1")
_DEFAULT_PORT = {"http": 80, "https": 443}


def origin_problem(origin: str) -> str | None:
    """Why `origin` is not an exact origin a browser sends (None when it is one).

    Browsers send scheme and host in lower case and never the default port, so anything else would never
    match; plain http is accepted for loopback development servers only.
    """
    parts = urlsplit(origin)
    host = parts.hostname or ""
    if origin != origin.lower():
        return "must be lower case"
    try:
        port = parts.port
    except ValueError:
        return "has an invalid port"
    if port is not None and (port == 0 or port == _DEFAULT_PORT.get(parts.scheme)):
        return "must not name port 0 or the scheme's default port"
    if host not in _LOOPBACK and not all(_LABEL.match(label) for label in host.split(".")):
        return "has an invalid host name"
    if parts.scheme == "http" and host not in _LOOPBACK:
        return "must use https (plain http only for localhost)"
    return None


class ArchiveLimits(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    max_depth: Annotated[int, msgspec.Meta(ge=0, le=10)] = 2
    max_members: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 1000
    max_total_size: Annotated[int, msgspec.Meta(ge=1, le=64 * 1024**3)] = 1024**3
    max_ratio: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 100


class Policy(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    max_file_size: Annotated[int, msgspec.Meta(ge=1, le=GLOBAL_MAX_FILE_SIZE)] = 100 * 1024**2
    allowed_types: Annotated[list[MimePattern], msgspec.Meta(max_length=200)] = msgspec.field(
        default_factory=lambda: ["image/*", "video/*", "application/pdf", "text/plain"]
    )
    archive_limits: ArchiveLimits = msgspec.field(default_factory=ArchiveLimits)
    infected_action: Literal["keep", "delete"] = "keep"
    unscannable_action: Literal["rejected", "scan_failed"] = "rejected"
    """What a file the scanner could not fully scan (over its limits, encrypted) becomes; never clean."""
    extension_mismatch_action: Literal["reject", "rename"] = "rename"
    """A name ending in an extension that runs when opened (`.html`, `.js`, `.svg`, `.exe`, `.sh`...) on
    content the scan detected as something else: `rename` appends the detected type's extension
    (`page.html.txt`), `reject` makes the upload `rejected` (`extension_mismatch`)."""
    retention_days: Annotated[int, msgspec.Meta(ge=1, le=3650)] = 30
    cors_origins: Annotated[list[Origin], msgspec.Meta(max_length=100)] = msgspec.field(default_factory=list)
