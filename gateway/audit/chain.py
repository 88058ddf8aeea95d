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


def split_canonical(event: dict[str, Any]) -> tuple[str, str, str]:
    """The canonical form around the two values only the database knows at append time.

    With keys sorted, the event reads `…,"prev_hash":"<prev>","request_id":…,"seq":<seq>,"target":…}`;
    `head + prev + middle + str(seq) + tail` is exactly `canonical(event)`, so the database computes
    `link` as sha256(prev || head || prev || middle || seq || tail) inside the append statement.
    """
    known = {k: v for k, v in event.items() if k not in ("prev_hash", "seq", "request_id", "target", "hash")}
    if any(k > "outcome" for k in known):
        raise ValueError("event keys must sort before prev_hash")
    head = _encoder.encode(known)[:-1] + b',"prev_hash":"'
    middle = b'","request_id":' + _encoder.encode(event["request_id"]) + b',"seq":'
    tail = b',"target":' + _encoder.encode(event["target"]) + b"}"
    return head.decode(), middle.decode(), tail.decode()
