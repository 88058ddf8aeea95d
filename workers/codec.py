"""arq's job payloads and results as msgpack of plain values, never pickle.

arq pickles by default, and unpickling runs whatever the bytes ask for: anyone who can write to Redis (a
shared Redis in production, any local user of an unprotected dev server) would run code in every worker.
msgpack decodes to dicts, lists, strings, numbers and bytes only; our jobs carry nothing else (ids as
strings). Bytes that are not such a payload are refused: arq then fails the job without running it, and
we say so as a security alert, since only someone writing to Redis behind our back puts them there.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec
import structlog

log = structlog.get_logger("filegate.jobs")


def _plain(value: Any) -> Any:
    # arq stores the exception of a failed job as its result: keep its type and message, not the object.
    if isinstance(value, BaseException):
        return f"{type(value).__name__}: {value}"
    raise NotImplementedError(f"a job payload holds only plain values, not {type(value).__name__}")


_encoder = msgspec.msgpack.Encoder(enc_hook=_plain)
_decoder = msgspec.msgpack.Decoder(dict[str, Any])


def encode(data: dict[str, Any]) -> bytes:
    """arq's `job_serializer`: the job (or result) mapping as msgpack."""
    return _encoder.encode(data)


def decode(raw: bytes) -> dict[str, Any]:
    """arq's `job_deserializer`: a msgpack mapping, or `msgspec.DecodeError` (arq fails the job)."""
    try:
        return _decoder.decode(raw)
    except msgspec.DecodeError:
        log.warning(
            "security.alert",
            kind="job_payload_rejected",
            size=len(raw),
            sha256=hashlib.sha256(raw).hexdigest(),
            pickle=raw[:1] == b"\x80",
        )
        raise
