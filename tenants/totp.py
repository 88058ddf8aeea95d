"""TOTP (RFC 6238) enrollment and verification with pyotp, and single-use recovery codes."""

from __future__ import annotations

import secrets
import time

import pyotp

from tenants.credentials import digest

STEP = 30
RECOVERY_CODES = 10


def new_secret() -> str:
    return pyotp.random_base32()


def provisioning_uri(secret: str, *, account: str, issuer: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=account, issuer_name=issuer)


def accepted_step(secret: str, code: str, *, last_step: int, now: float | None = None) -> int | None:
    """The time step `code` belongs to (one step of clock drift allowed), or None.

    A step at or before `last_step` is refused: a code is good once.
    """
    if not (len(code) == 6 and code.isdigit()):
        return None
    totp = pyotp.TOTP(secret)
    t = time.time() if now is None else now
    current = int(t // STEP)
    for step in (current, current - 1, current + 1):
        if step > last_step and secrets.compare_digest(totp.at(step * STEP), code):
            return step
    return None


def new_recovery_codes() -> list[str]:
    """Ten codes like `k7qd-3mzp-x9ta`; only their digests are stored."""
    alphabet = "abcdefghjkmnpqrstuvwxyz23456789"
    return [
        "-".join("".join(secrets.choice(alphabet) for _ in range(4)) for _ in range(3))
        for _ in range(RECOVERY_CODES)
    ]


def recovery_digest(code: str) -> str:
    return digest(code.strip().lower())


def looks_like_recovery_code(code: str) -> bool:
    return len(code.strip()) == 14 and code.strip().count("-") == 2
