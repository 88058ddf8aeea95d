"""Where a delivery writes, `<path>/<filename>` inside the connection's root, and the check at ingest that
the connection will take that key: what ingest accepts, delivery never refuses for its name."""

from __future__ import annotations

import uuid

import msgspec

from connectors.base import InvalidKey
from connectors.models import Connection
from connectors.paths import ObjectRoot
from connectors.schemas import base_of, decode_config
from gateway.errors import ValidationFailed
from gateway.uploads import filenames
from scanning.filetype import SAFE_EXTENSION_MAX


def destination_key(path: str | None, filename: str) -> str:
    """The object key inside the connection's root: `<path>/<filename>`, or the filename alone."""
    folder = (path or "").strip("/")
    return f"{folder}/{filename}" if folder else filename


def check_destination(tenant_id: uuid.UUID, connection: Connection, path: str | None, filename: str) -> None:
    """ValidationFailed unless the connection's root takes `<path>/<filename>`, even once the scan has
    renamed the file (a safe extension appended, `scanning.filetype.safe_extension`)."""
    try:
        config = decode_config(connection.kind, connection.config)
    except msgspec.ValidationError:
        return  # a connection stored by an older version: delivery reports what is wrong with it
    root = ObjectRoot.of(tenant_id, base_of(connection.kind, config))
    room = min(len(filename.encode()) + 1 + SAFE_EXTENSION_MAX, filenames.MAX_BYTES)
    try:
        root.key(destination_key(path, "n" * room))
    except InvalidKey as exc:
        raise ValidationFailed(f"path: with this connection's base path, {exc.detail}") from None
