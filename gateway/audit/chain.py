"""The hash chain, pure: canonical JSON and `hash = SHA-256(prev_hash || canonical event)`.

Anyone holding an export recomputes it with these two functions: keys sorted, no spaces, UTF-8.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import msgspec

GENESIS = "0" * 64

_encoder = msgspec.json.Encoder(order="sorted")


def format_at(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical(event: dict[str, Any]) -> bytes:
    """The event without `hash`, as sorted, compact UTF-8 JSON."""
    return _encoder.encode({k: v for k, v in event.items() if k != "hash"})


def link(prev_hash: str, event: dict[str, Any]) -> str:
    return hashlib.sha256(prev_hash.encode() + canonical(event)).hexdigest()
