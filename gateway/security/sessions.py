"""Browser sessions: a `__Host-` cookie naming a server-side session in Redis, with a CSRF token.

The cookie holds 256 random bits; Redis holds the session under SHA-256 of that value, so a copy of
Redis does not hand out sessions, and sealed (`redis_records`) for that key and one idle period (sealed
again on each use), so a write to Redis does not make one either: a record the servers did not seal for
this cookie is no session (and an alert), and one copied before a logout and written back after it dies
within the idle timeout. A session has an idle timeout (the key's TTL, renewed on use) and an
absolute one (stored, never renewed), is revoked by logout (deleted) and by everything that revokes a
user's tokens: it carries the user's session epoch, checked against the database's (through its cache)
on every request. Losing Redis loses sessions, never a revocation: a flushed session is simply gone. Unsafe methods with the
cookie must carry `X-CSRF-Token` equal to the session's synchronizer token; bearer tokens and API keys
never need it (a browser does not attach them by itself).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import uuid

import msgspec
from litestar.datastructures import Cookie
from redis.asyncio import Redis

from gateway.errors import FilegateError
from gateway.security.redis_records import RecordSeal

SESSION_COOKIE = "__Host-filegate_session"
CSRF_HEADER = "x-csrf-token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class CsrfFailed(FilegateError):
    code = "csrf_failed"
    status = 403
    title = "CSRF token missing or wrong"


class BrowserSession(msgspec.Struct, frozen=True):
    tenant_id: uuid.UUID
    user_id: uuid.UUID
    role: str
    csrf_token: str
    created_at: float
    expires_at: float  # absolute
    epoch: int  # the user's session epoch at sign-in: raised by disable, role or password change, erasure


def host_cookie(name: str, value: str, *, max_age: int) -> Cookie:
    """A `__Host-` cookie: host-only, Path=/, Secure, HttpOnly, SameSite=Lax (sent on top-level navigations)."""
    return Cookie(
        key=name, value=value, max_age=max_age, path="/", secure=True, httponly=True, samesite="lax"
    )


def session_cookie(value: str, *, max_age: int) -> Cookie:
    return host_cookie(SESSION_COOKIE, value, max_age=max_age)


def cleared_cookie() -> Cookie:
    return host_cookie(SESSION_COOKIE, "", max_age=0)


def csrf_matches(session: BrowserSession, presented: str | None) -> bool:
    return presented is not None and hmac.compare_digest(session.csrf_token.encode(), presented.encode())


class SessionStore:
    def __init__(self, redis: Redis, prefix: str, seal: RecordSeal, *, idle: int, absolute: int) -> None:
        self._redis = redis
        self._seal = seal
        self._prefix = prefix
        self.idle = idle
        self.absolute = absolute

    def _key(self, session_id: str) -> str:
        return f"{self._prefix}session:{hashlib.sha256(session_id.encode()).hexdigest()}"

    async def create(
        self, tenant_id: uuid.UUID, user_id: uuid.UUID, role: str, *, epoch: int
    ) -> tuple[str, BrowserSession]:
        """A new session for the user as the database knew them when it signed them in (role, epoch)."""
        session_id = secrets.token_urlsafe(32)
        now = time.time()
        session = BrowserSession(
            tenant_id=tenant_id,
            user_id=user_id,
            role=role,
            csrf_token=secrets.token_urlsafe(32),
            created_at=now,
            expires_at=now + self.absolute,
            epoch=epoch,
        )
        key = self._key(session_id)
        ttl = min(self.idle, self.absolute)
        await self._redis.set(
            key, self._seal.seal(key, msgspec.json.encode(session).decode(), ttl=ttl), ex=ttl
        )
        return session_id, session

    async def get(self, session_id: str) -> BrowserSession | None:
        """The live session (its idle timer renewed), or None when unknown, idle too long or past its end."""
        if not session_id or len(session_id) > 128:
            return None
        key = self._key(session_id)
        # None also when not sealed by us for this cookie, or past its absolute end.
        payload = await self._seal.read(self._redis, key, await self._redis.get(key))
        if payload is None:
            return None
        try:
            session = msgspec.json.decode(payload, type=BrowserSession)
        except msgspec.DecodeError:  # sealed by another version of this code: sign in again
            return None
        remaining = session.expires_at - time.time()
        if remaining <= 0:
            await self._redis.delete(key)
            return None
        # Sealed anew for one idle period, not for its whole life: a record copied out of Redis and written
        # back after logout is good for one idle period at most. XX: a logout meanwhile stays a logout.
        ttl = max(1, int(min(self.idle, remaining)))
        await self._redis.set(key, self._seal.seal(key, payload, ttl=ttl), ex=ttl, xx=True)
        return session

    async def delete(self, session_id: str) -> None:
        await self._redis.delete(self._key(session_id))


def cookie_value(raw_cookie_header: str | None, name: str = SESSION_COOKIE) -> str | None:
    """A cookie's value from a Cookie header (first occurrence; default: the session cookie), else None."""
    if not raw_cookie_header:
        return None
    for part in raw_cookie_header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value or None
    return None
