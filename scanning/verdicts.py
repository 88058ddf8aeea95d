"""Decisions are values: a scan answers one of these, and the caller decides with a `match`.

Nothing here signals a verdict by raising. `ScanError` is "could not decide" (scanner down, timeout,
over a limit the scanner could not fully scan): it is never treated as clean.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Clean:
    scanner: str
    database_version: str | None = None


@dataclass(frozen=True, slots=True)
class Infected:
    signature: str
    scanner: str
    database_version: str | None = None


@dataclass(frozen=True, slots=True)
class Rejected:
    """Refused by type or policy, e.g. reason `type_not_allowed`, `archive_limits`, `polyglot`, `active_content`."""

    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class ScanError:
    """The scanner could not give an answer. `retryable` is False when retrying cannot help (over limits)."""

    reason: str
    detail: str
    retryable: bool = True


Verdict = Clean | Infected | Rejected | ScanError
