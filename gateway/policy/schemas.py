"""The upload policy as the API shows it."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

GLOBAL_MAX_FILE_SIZE = 5 * 1024**3  # the ceiling no tenant may raise its limit above
MimePattern = Annotated[
    str,
    msgspec.Meta(
        max_length=255, pattern=r"^(\*/\*|[a-z0-9][a-z0-9!#$&^_.+-]*/(\*|[a-z0-9][a-z0-9!#$&^_.+-]*))$"
    ),
]
Origin = Annotated[str, msgspec.Meta(max_length=255, pattern=r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$")]


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
    retention_days: Annotated[int, msgspec.Meta(ge=1, le=3650)] = 30
    cors_origins: Annotated[list[Origin], msgspec.Meta(max_length=100)] = msgspec.field(default_factory=list)
