"""argon2id password hashing and the password policy (NIST SP 800-63B style: length and known-bad, no rotation)."""

from __future__ import annotations

import asyncio
import itertools
import unicodedata

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_LENGTH = 12
# Bounded so an attacker cannot make us hash megabytes per request.
MAX_LENGTH = 256

# The head of every public breached-password list, plus patterns that pass a length rule and nothing else.
_COMMON = frozenset(
    {
        "password",
        "passw0rd",
        "123456",
        "12345678",
        "123456789",
        "1234567890",
        "qwerty",
        "qwertyuiop",
        "letmein",
        "welcome",
        "iloveyou",
        "admin",
        "administrator",
        "monkey",
        "dragon",
        "football",
        "baseball",
        "sunshine",
        "princess",
        "trustno1",
        "changeme",
        "secret",
        "login",
        "master",
        "abc123",
        "starwars",
        "whatever",
        "superman",
        "hello",
        "freedom",
        "shadow",
        "michael",
        "qazwsx",
        "zaq12wsx",
        "asdfghjkl",
        "1q2w3e4r",
        "1qaz2wsx",
        "password1",
        "password123",
        "welcome1",
        "letmein1",
    }
)


class PasswordPolicyError(ValueError):
    """The password breaks the policy; the message is safe to show (it never echoes the password)."""


def check_policy(password: str, *, context: tuple[str, ...] = ()) -> None:
    """Refuse short, over-long, single-character, sequential, common or context-derived passwords."""
    pw = unicodedata.normalize("NFKC", password)
    if len(pw) < MIN_LENGTH:
        raise PasswordPolicyError(f"password must be at least {MIN_LENGTH} characters")
    if len(pw) > MAX_LENGTH:
        raise PasswordPolicyError(f"password must be at most {MAX_LENGTH} characters")
    lowered = pw.casefold()
    if len(set(lowered)) < 4:
        raise PasswordPolicyError("password uses too few distinct characters")
    stripped = lowered.strip("0123456789!@#$%^&*.?_- ")
    if lowered in _COMMON or stripped in _COMMON or _is_run(lowered):
        raise PasswordPolicyError("password is too common")
    if not any(c.isalpha() for c in pw) and len(pw) < 16:
        raise PasswordPolicyError("a password without letters must be at least 16 characters")
    for word in context:
        w = word.casefold()
        if len(w) >= 4 and w in lowered:
            raise PasswordPolicyError("password must not contain your email, name or organisation")


def _step(a: str, b: str) -> int:
    """+1 or -1 when b follows or precedes a (digits wrap: 9 then 0), else 0."""
    if a.isdigit() and b.isdigit():
        d = (int(b) - int(a)) % 10
        return {1: 1, 9: -1}.get(d, 0)
    d = ord(b) - ord(a)
    return d if d in (1, -1) else 0


def _is_run(s: str) -> bool:
    """Ascending or descending runs (abcd…, 9876…, 7890…) and one short pattern repeated."""
    if len(s) < MIN_LENGTH:
        return False
    steps = {_step(a, b) for a, b in itertools.pairwise(s)}
    if steps in ({1}, {-1}):
        return True
    return any(len(s) % n == 0 and s[:n] * (len(s) // n) == s for n in range(1, 5))


class PasswordHashing:
    """argon2id with explicit cost; hashing runs in a thread so it never blocks the event loop."""

    def __init__(self, *, time_cost: int, memory_kib: int, parallelism: int = 1) -> None:
        self._hasher = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism, type=Type.ID
        )
        # Verified when the account does not exist, so both paths cost the same.
        self._dummy = self._hasher.hash("filegate-dummy-password-for-timing")

    @property
    def parameters(self) -> str:
        h = self._hasher
        return f"argon2id m={h.memory_cost} KiB, t={h.time_cost}, p={h.parallelism}"

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, stored: str | None, password: str) -> bool:
        """True when `password` matches; with no stored hash, spends the same time and answers False."""
        target = stored or self._dummy
        try:
            ok = await asyncio.to_thread(self._hasher.verify, target, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
        return bool(ok) and stored is not None

    def needs_rehash(self, stored: str) -> bool:
        return self._hasher.check_needs_rehash(stored)
