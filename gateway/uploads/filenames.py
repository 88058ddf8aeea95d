"""File names are hostile: a safe stored name, an escaped original, and a safe Content-Disposition."""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import quote

from connectors.base import InvalidKey
from connectors.paths import check_segment

MAX_BYTES = 200  # leaves room for suffixes within common 255-byte file name limits
FALLBACK = "upload"
_RESERVED = re.compile(
    r"\A(con|prn|aux|nul|com[0-9]|lpt[0-9]|conin\$|conout\$|desktop\.ini)(\..*)?\Z", re.IGNORECASE
)
# SharePoint and OneDrive also refuse `_vti_` anywhere in a name and names starting with `~$`.
_SHAREPOINT_REFUSED = re.compile(r"_vti_|\A~[$]", re.IGNORECASE)
_UNSAFE = re.compile(r'[<>:"/\\|?*\x00-\x1f\x7f]')


def _invisible(ch: str) -> bool:
    # Cc: control, Cf: format (bidi overrides U+202A-202E, U+2066-2069, zero-width), Zl/Zp: separators.
    return unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Co", "Cs", "Cn")


def sanitize(name: str | None) -> str:
    """A name with no path parts, control or bidi characters, reserved names or unbounded length, that every
    connector accepts as an object name (`connectors.paths.check_segment`): what ingest accepts, delivery
    never refuses.

    The connectors' rule also reads a name behind percent-encoding and Unicode compatibility forms (`%2e%2e`,
    fullwidth dots, the two-dot leader). A name refused in such a reading is cleaned again in plain terms
    (compatibility forms folded, `%` replaced) rather than refused, as browsers upload whatever name the
    user's file has; only a name with nothing left becomes `upload`.
    """
    if not name:
        return FALLBACK
    for reading in (name, unicodedata.normalize("NFKC", name).replace("%", "_")):
        cleaned = _clean(reading)
        if _storable(cleaned):
            return cleaned
    return FALLBACK


def with_extension(name: str, extension: str) -> str:
    """`name` with `.extension` appended, its stem shortened to stay within MAX_BYTES; still storable."""
    renamed = _truncate(f"{name}.{extension}")
    return renamed if _storable(renamed) else f"{FALLBACK}.{extension}"


def _clean(name: str) -> str:
    name = unicodedata.normalize("NFC", name)
    name = re.split(r"[/\\]", name)[-1]  # no path parts, whatever the client's OS
    name = "".join("_" if _invisible(c) else c for c in name)
    name = _UNSAFE.sub("_", name)
    name = re.sub(r"\s+", " ", name).strip(" .")
    if not name or set(name) <= {"_", "."}:
        return FALLBACK
    if _RESERVED.match(name):
        name = "_" + name
    name = _SHAREPOINT_REFUSED.sub(lambda m: "~_" if m.group() == "~$" else m.group()[:4] + "-", name)
    return unicodedata.normalize("NFC", _truncate(name))


def _storable(name: str) -> bool:
    try:
        check_segment(name)
    except InvalidKey:
        return False
    return len(name.encode()) <= MAX_BYTES


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
