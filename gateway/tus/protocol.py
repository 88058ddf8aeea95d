"""tus 1.0.0 wire details: headers, metadata, checksums, errors. Pure, no I/O."""

from __future__ import annotations

import base64
import binascii
import hashlib
from datetime import datetime
from email.utils import format_datetime

from gateway.errors import FilegateError
from tenants.inputs import INT64_MAX

VERSION = "1.0.0"
EXTENSIONS = "creation,creation-with-upload,termination,checksum,expiration"
CHECKSUM_ALGORITHMS = {"sha1": hashlib.sha1, "sha256": hashlib.sha256}
OFFSET_CONTENT_TYPE = "application/offset+octet-stream"
METADATA_KEYS = ("filename", "filetype", "connection_id", "path")


class TusError(FilegateError):
    code = "validation_failed"
    status = 400
    title = "Invalid tus request"


class UnsupportedVersion(TusError):
    code = "tus_version_unsupported"
    status = 412
    title = "Unsupported tus version"


class OffsetMismatch(TusError):
    code = "offset_mismatch"
    status = 409
    title = "Upload-Offset does not match"


class ChecksumMismatch(TusError):
    code = "checksum_mismatch"
    status = 460
    title = "Checksum mismatch"


class UploadLocked(TusError):
    code = "upload_locked"
    status = 423
    title = "Upload is locked by another request"


class UploadGone(TusError):
    code = "not_found"
    status = 404
    title = "Not found"


def base_headers() -> dict[str, str]:
    return {"Tus-Resumable": VERSION}


def expires_header(at: datetime | None) -> dict[str, str]:
    return {"Upload-Expires": format_datetime(at, usegmt=True)} if at is not None else {}


def parse_metadata(header: str | None) -> dict[str, str]:
    """`Upload-Metadata`: comma-separated `key base64(value)`; only the keys we know, each at most once."""
    out: dict[str, str] = {}
    if not header:
        return out
    if len(header) > 8192:
        raise TusError("Upload-Metadata is too long")
    for pair in header.split(","):
        key, _, value = pair.strip().partition(" ")
        if not key:
            continue
        if key in out:
            raise TusError(f"Upload-Metadata repeats {key[:32]}")
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8") if value.strip() else ""
        except (binascii.Error, UnicodeDecodeError):
            raise TusError("Upload-Metadata values must be base64 of UTF-8") from None
        if key in METADATA_KEYS:
            out[key] = decoded
    return out


def parse_checksum(header: str | None) -> tuple[str, bytes] | None:
    """`Upload-Checksum: <algorithm> <base64 digest>`."""
    if header is None:
        return None
    algorithm, _, encoded = header.strip().partition(" ")
    if algorithm not in CHECKSUM_ALGORITHMS:
        raise TusError("Upload-Checksum algorithm must be sha1 or sha256")
    try:
        return algorithm, base64.b64decode(encoded.strip(), validate=True)
    except binascii.Error:
        raise TusError("Upload-Checksum digest must be base64") from None


def parse_int_header(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    # ASCII digits only (str.isdigit also takes "²" and other scripts' digits), within PostgreSQL's bigint.
    if not (value.isascii() and value.isdigit()) or len(value) > 19 or int(value) > INT64_MAX:
        raise TusError(f"{name} must be a non-negative integer")
    return int(value)
