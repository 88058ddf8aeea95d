"""Uploads as the API shows them."""

from __future__ import annotations

import uuid
from datetime import datetime

import msgspec


class Verdict(msgspec.Struct, kw_only=True):
    scanner: str
    signature: str | None
    database_version: str | None
    scanned_at: datetime


class UploadOut(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    filename: str
    original_filename: str
    size: int
    sha256: str | None
    declared_type: str | None
    detected_type: str | None
    state: str
    reason: str | None
    verdict: Verdict | None
    connection_id: uuid.UUID | None
    path: str | None
    owner_id: uuid.UUID
    created_at: datetime
    updated_at: datetime


class UploadPage(msgspec.Struct):
    items: list[UploadOut]
    next_cursor: str | None
