"""What a client may send and PostgreSQL can store: the constrained types every request body uses.

Every string in a request struct is one of these types (or carries its own `anchored` pattern), so a
NUL, which PostgreSQL refuses in `text` and `jsonb`, or a control character never gets past decoding:
the client gets a 400 instead of the database a statement it will refuse.

msgspec *searches* a pattern with Python's `re`, where `$` also matches before a trailing newline, and the
same pattern is published in the OpenAPI document, where it is an ECMA-262 regex that knows no `\\Z`.
`anchored` writes the one form both read the same way: `^` and a lookahead for the end of the string.

Emails have one canonical form (`normalize_email`): NFKC then casefold, so compatibility forms
(fullwidth letters, modifier letters, ligatures) and case are one identity, and invisible or control
characters are refused outright rather than silently making a second account.
"""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime
from typing import Annotated

import msgspec

# The end of the string in Python and in ECMA-262 alike (unlike `$`, not before a final newline).
END = r"(?![\s\S])"


def anchored(body: str) -> str:
    """A pattern that must match the whole string, read the same by msgspec and by OpenAPI clients."""
    return f"^(?:{body}){END}"


# C0 and C1 controls, DEL, the Unicode line and paragraph separators. (Unpaired surrogates, which no
# encoder takes, never reach a body's strings: msgspec's JSON decoder refuses them; and the Rust and
# JavaScript regex engines of OpenAPI tools refuse them in a pattern.)
_CONTROLS = r"\x00-\x1f\x7f-\x9f\u2028\u2029"
LINE_PATTERN = anchored(rf"[^{_CONTROLS}]*")
# Multi-line text (a caption, a PEM certificate): tab, line feed and carriage return allowed.
TEXT_PATTERN = anchored(r"[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*")

Line = Annotated[str, msgspec.Meta(pattern=LINE_PATTERN)]
"""One line of text: a name, a filter, an identifier. No control characters, no line breaks."""

Text = Annotated[str, msgspec.Meta(pattern=TEXT_PATTERN)]
"""Free text that may span lines; still no NUL or other control characters."""

SLUG_PATTERN = anchored(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?")
Slug = Annotated[str, msgspec.Meta(min_length=2, max_length=63, pattern=SLUG_PATTERN)]

EMAIL_PATTERN = anchored(rf"[^@\s{_CONTROLS}]+@[^@\s{_CONTROLS}]+")
Email = Annotated[str, msgspec.Meta(min_length=3, max_length=320, pattern=EMAIL_PATTERN)]

# PostgreSQL `bigint`; Python ints are unbounded and asyncpg refuses the rest with a 500.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# Every aware datetime Python can shift to UTC (asyncpg does, for `timestamptz`): one day in from each end.
EARLIEST = datetime(1, 1, 2, tzinfo=UTC)
LATEST = datetime(9999, 12, 30, tzinfo=UTC)


class InvalidInput(ValueError):
    """A value a client sent that cannot be stored or compared; the message is safe to show."""


def is_line(value: str) -> bool:
    """True when `value` has no control characters or line breaks (what `Line` accepts)."""
    return not any(_refused_in_line(c) for c in value)


def _refused_in_line(c: str) -> bool:
    o = ord(c)
    return o < 0x20 or 0x7F <= o <= 0x9F or o in (0x2028, 0x2029) or 0xD800 <= o <= 0xDFFF


def instant(value: datetime, name: str) -> datetime:
    """`value` if it is an aware datetime PostgreSQL and asyncpg can take; InvalidInput otherwise."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput(f"{name} must be an RFC 3339 timestamp with a timezone")
    if not EARLIEST <= value <= LATEST:
        raise InvalidInput(f"{name} is out of range")
    return value


def int64(value: int, name: str) -> int:
    if not INT64_MIN <= value <= INT64_MAX:
        raise InvalidInput(f"{name} is out of range")
    return value


def _invisible(c: str) -> bool:
    # Cc controls, Cf format characters (zero-width space/joiners, bidi overrides, BOM, soft hyphen),
    # Cs surrogates, Co private use, Cn unassigned, Z* separators (spaces of every kind).
    return unicodedata.category(c)[0] in "CZ"


def normalize_email(raw: str) -> str:
    """The one stored and compared form of an email: NFKC, casefold; invisible characters are refused."""
    value = raw.strip()
    if any(_invisible(c) for c in value):
        raise InvalidInput("the email must not contain spaces, control or invisible characters")
    value = unicodedata.normalize("NFKC", value).casefold()
    # Casefolding can leave a non-NFKC string ("ǰ" and friends): normalise once more, then it is stable.
    value = unicodedata.normalize("NFKC", value)
    if (
        any(_invisible(c) for c in value)
        or value.count("@") != 1
        or value.startswith("@")
        or value.endswith("@")
    ):
        raise InvalidInput("the email is not an address")
    return value


def account_key(raw: str) -> str:
    """What a refused login's tenant or email imitates, for counting failures: invisible characters
    dropped, then normalised like an email. Adding zero-width spaces is no way around the lockout."""
    visible = "".join(c for c in raw if not _invisible(c))
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", visible).casefold())
