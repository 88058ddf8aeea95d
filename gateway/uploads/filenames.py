"""File names are hostile: a safe stored name, an escaped original, and a safe Content-Disposition."""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import quote

MAX_BYTES = 200  # leaves room for suffixes within common 255-byte file name limits
FALLBACK = "upload"
_RESERVED = re.compile(r"\A(con|prn|aux|nul|com[0-9]|lpt[0-9]|conin\$|conout\$)(\..*)?\Z", re.IGNORECASE)
_UNSAFE = re.compile(r'[<>:"/\\|?*\x00-\x1f\x7f]')


def _invisible(ch: str) -> bool:
    # Cc: control, Cf: format (bidi overrides U+202A-202E, U+2066-2069, zero-width), Zl/Zp: separators.
    return unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Co", "Cs", "Cn")


def sanitize(name: str | None) -> str:
    """A name with no path parts, control or bidi characters, reserved names or unbounded length."""
    if not name:
        return FALLBACK
    name = unicodedata.normalize("NFC", name)
    name = re.split(r"[/\\]", name)[-1]  # no path parts, whatever the client's OS
    name = "".join("_" if _invisible(c) else c for c in name)
    name = _UNSAFE.sub("_", name)
    name = re.sub(r"\s+", " ", name).strip(" .")
    if not name or set(name) <= {"_", "."}:
        return FALLBACK
    if _RESERVED.match(name):
        name = "_" + name
    return _truncate(name)


def _truncate(name: str) -> str:
    if len(name.encode()) <= MAX_BYTES:
        return name
    stem, dot, ext = name.rpartition(".")
    if not dot or len(ext.encode()) > 16:
        stem, ext = name, ""
    budget = MAX_BYTES - (len(ext.encode()) + 1 if ext else 0)
    cut = stem.encode()[:budget].decode("utf-8", errors="ignore").rstrip(" .")
    return f"{cut}.{ext}" if ext else cut


def escape_original(name: str | None, limit: int = 1024) -> str:
    """The client's name kept for display only: invisible and non-printable characters become \\uXXXX."""
    if not name:
        return ""
    out = []
    for c in name[:limit]:
        out.append(f"\\u{ord(c):04x}" if _invisible(c) or not c.isprintable() else c)
    return "".join(out)


def content_disposition(filename: str) -> str:
    """RFC 6266: an ASCII fallback and the exact name in `filename*` (RFC 5987)."""
    ascii_name = unicodedata.normalize("NFKD", filename).encode("ascii", "ignore").decode()
    ascii_name = re.sub(r"[^A-Za-z0-9._ -]", "_", ascii_name).strip() or FALLBACK
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"
