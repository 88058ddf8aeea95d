"""CORS per tenant, from the policy's `cors_origins`: exact origins echoed back, never `*`.

Two halves, because a preflight carries no credentials and an actual request's tenant is only known after
authentication:

- `CorsPreflight` wraps the ASGI handler inside the edge, before routing: it answers every cross-origin
  preflight itself (OPTIONS with Origin and Access-Control-Request-Method), so none reaches a route (tus has
  its own OPTIONS route; a plain OPTIONS still goes there). The tenant is unknown, so the origin qualifies
  when ANY tenant lists it (`origin_is_allowed`, a SECURITY DEFINER function: the app role cannot read other
  tenants' policies). It also adds `Vary: Origin` to every cross-origin answer, 401s included.
- `CorsHeaders` is a route middleware listed after `AuthenticationMiddleware`, so it sees the principal:
  Access-Control-Allow-Origin (with credentials and the exposed headers) only when the principal's own
  tenant lists the origin. Unauthenticated answers (401s are raised outside it) and other tenants' origins
  get none, so a browser cannot read them.

Both lookups are cached in-process (no state leaves the process, so any replica serves any request): the
any-tenant answer per origin for `ANY_TENANT_TTL`, a tenant's origins for `TENANT_TTL`. A policy change thus
reaches CORS within those seconds on every replica. Same-origin requests (no Origin, or the gateway's own
origin) are left untouched.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit

import structlog
from litestar.enums import ScopeType
from litestar.middleware import DefineMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from sqlalchemy import text

from gateway.security.principal import Principal

log = structlog.get_logger("filegate.cors")

ANY_TENANT_TTL = 30.0
"""Seconds a preflight's "does some tenant list this origin?" answer (yes or no) is reused."""
TENANT_TTL = 10.0
"""Seconds a tenant's allowed origins are reused; the policy is read on every cross-origin request."""
MAX_CACHED = 10_000
"""Entries per cache; origins come from unauthenticated requests, so the cache must stay bounded."""
MAX_AGE = b"600"

ALLOWED_METHODS = frozenset({"GET", "HEAD", "POST", "PATCH", "PUT", "DELETE", "OPTIONS"})
ALLOWED_HEADERS = frozenset(
    h.lower()
    for h in (
        "Authorization",
        "Content-Type",
        "X-CSRF-Token",
        "X-Request-ID",
        "Tus-Resumable",
        "Upload-Length",
        "Upload-Offset",
        "Upload-Metadata",
        "Upload-Checksum",
        "Upload-Concat",
        "Upload-Defer-Length",
        "X-HTTP-Method-Override",
        "Content-Disposition",
    )
)
# What a script on an allowed origin may read; Access-Control-Expose-Headers takes no prefix patterns.
EXPOSED_HEADERS = ", ".join(
    (
        "Location",
        "Upload-Offset",
        "Upload-Length",
        "Upload-Expires",
        "Upload-Metadata",
        "Tus-Resumable",
        "Tus-Version",
        "Tus-Extension",
        "Tus-Max-Size",
        "Tus-Checksum-Algorithm",
        "X-Request-ID",
        "RateLimit-Limit",
        "RateLimit-Remaining",
        "RateLimit-Reset",
        "Retry-After",
        "Content-Disposition",
    )
).encode()

# What a browser sends as Origin: scheme and host in lower case, the port only when not the default.
_ORIGIN = re.compile(r"\Ahttps?://[a-z0-9.-]{1,253}(:[0-9]{1,5})?\Z")

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """A small per-process cache whose entries expire after `ttl` seconds; bounded to `max_entries`."""

    def __init__(
        self, ttl: float, *, max_entries: int = MAX_CACHED, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._ttl = ttl
        self._max = max_entries
        self._clock = clock
        self._entries: dict[K, tuple[float, V]] = {}

    def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= self._clock():
            self._entries.pop(key, None)
            return None
        return entry[1]

    def put(self, key: K, value: V) -> None:
        now = self._clock()
        if len(self._entries) >= self._max:
            self._entries = {k: e for k, e in self._entries.items() if e[0] > now}
            while len(self._entries) >= self._max:  # all live: drop the oldest
                self._entries.pop(next(iter(self._entries)))
        self._entries.pop(key, None)  # re-inserted last, so insertion order stays expiry order
        self._entries[key] = (now + self._ttl, value)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _own_origin(url: str | None) -> str | None:
    if not url:
        return None
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower() if parts.scheme and parts.netloc else None


class Cors:
    """Shared by both halves: the gateway's own origin and the two caches (one per app, never global)."""

    def __init__(self, *, public_url: str | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self._public_origin = _own_origin(public_url)
        self._any_tenant: TtlCache[str, bool] = TtlCache(ANY_TENANT_TTL, clock=clock)
        self._tenants: TtlCache[uuid.UUID, frozenset[str]] = TtlCache(TENANT_TTL, clock=clock)

    @property
    def middleware(self) -> DefineMiddleware:
        """The route middleware; list it after `AuthenticationMiddleware`."""
        return DefineMiddleware(CorsHeaders, cors=self)

    def preflight(self, app: ASGIApp) -> ASGIApp:
        """Wrap the app's ASGI handler (inside the edge middleware, before routing)."""
        return CorsPreflight(app, self)

    def cross_origin(self, scope: Scope) -> str | None:
        """The Origin header of a cross-origin request, as sent; None when absent or same-origin."""
        origin = _header(scope, b"origin")
        if origin is None:
            return None
        lowered = origin.lower()
        host = _header(scope, b"host")
        if host is not None and lowered == f"{scope.get('scheme', 'http')}://{host}".lower():
            return None
        if self._public_origin is not None and lowered == self._public_origin:
            return None
        return origin

    async def listed_by_any_tenant(self, scope: Scope, origin: str) -> bool:
        key = origin.lower()
        if not _ORIGIN.match(key):
            return False  # `null`, paths, garbage: never listed, and not worth a query
        cached = self._any_tenant.get(key)
        if cached is not None:
            return cached
        try:
            async with scope["app"].state.db.sessionmaker() as session:
                listed = bool(
                    (await session.execute(text("SELECT origin_is_allowed(:o)"), {"o": key})).scalar()
                )
        except Exception as exc:  # fail closed, and do not remember the failure
            log.warning("cors.lookup_failed", error=type(exc).__name__)
            return False
        self._any_tenant.put(key, listed)
        return listed

    async def listed_by_tenant(self, scope: Scope, tenant_id: uuid.UUID, origin: str) -> bool:
        key = origin.lower()
        if not _ORIGIN.match(key):
            return False
        origins = self._tenants.get(tenant_id)
        if origins is None:
            state = scope["app"].state
            try:
                async with state.db.tenant(tenant_id) as session:
                    policy = await state.policy.get(session, tenant_id)
            except Exception as exc:
                log.warning("cors.lookup_failed", error=type(exc).__name__)
                return False
            origins = frozenset(o.lower() for o in policy.cors_origins)
            self._tenants.put(tenant_id, origins)
        return key in origins


def _with_vary(headers: list[tuple[bytes, bytes]], value: bytes) -> list[tuple[bytes, bytes]]:
    """Add `value` to the response's Vary header, merging with one already there."""
    for i, (name, existing) in enumerate(headers):
        if name.lower() == b"vary":
            present = {v.strip().lower() for v in existing.split(b",")}
            if b"*" in present or value.lower() in present:
                return headers
            return [*headers[:i], (b"vary", existing + b", " + value), *headers[i + 1 :]]
    return [*headers, (b"vary", value)]


def _preflight_headers(origin: str, method: str, requested: str | None) -> list[tuple[bytes, bytes]] | None:
    """The grant for a listed origin, or None when the method or a requested header is not allowed."""
    if method not in ALLOWED_METHODS:  # exact: `patch` is not `PATCH` to a browser
        return None
    names = [n.strip().lower() for n in (requested or "").split(",") if n.strip()]
    if any(n not in ALLOWED_HEADERS for n in names):
        return None
    headers = [
        (b"access-control-allow-origin", origin.encode("latin-1")),
        (b"access-control-allow-credentials", b"true"),
        (b"access-control-allow-methods", method.encode()),
        (b"access-control-max-age", MAX_AGE),
    ]
    if names:
        headers.append((b"access-control-allow-headers", ", ".join(names).encode()))
    return headers


_PREFLIGHT_VARY = b"Origin, Access-Control-Request-Method, Access-Control-Request-Headers"


class CorsPreflight:
    """Answers cross-origin preflights before routing; adds `Vary: Origin` to other cross-origin answers."""

    def __init__(self, app: ASGIApp, cors: Cors) -> None:
        self.app = app
        self.cors = cors

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        origin = self.cors.cross_origin(scope)
        if origin is None:
            await self.app(scope, receive, send)
            return
        method = _header(scope, b"access-control-request-method")
        if scope.get("method") == "OPTIONS" and method is not None:
            await self._preflight(scope, send, origin, method)
            return

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": _with_vary(list(message.get("headers", [])), b"Origin")}
            await send(message)

        await self.app(scope, receive, send_wrapper)

    async def _preflight(self, scope: Scope, send: Send, origin: str, method: str) -> None:
        headers: list[tuple[bytes, bytes]] = [(b"vary", _PREFLIGHT_VARY)]
        grant = None
        if await self.cors.listed_by_any_tenant(scope, origin):
            grant = _preflight_headers(origin, method, _header(scope, b"access-control-request-headers"))
        if grant is None:
            # No CORS headers: the browser refuses the actual request. The origin is the client's own
            # claim, so it is logged cut short.
            log.info("cors.preflight_refused", origin=origin[:100], method=method[:16])
        else:
            headers.extend(grant)
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


class CorsHeaders:
    """After authentication: lets an origin read the answer when the principal's tenant lists it."""

    def __init__(self, app: ASGIApp, cors: Cors) -> None:
        self.app = app
        self.cors = cors

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        principal: Any = scope.get("user")
        origin = self.cors.cross_origin(scope) if isinstance(principal, Principal) else None
        if origin is None or not await self.cors.listed_by_tenant(scope, principal.tenant_id, origin):
            await self.app(scope, receive, send)
            return
        grant = [
            (b"access-control-allow-origin", origin.encode("latin-1")),
            (b"access-control-allow-credentials", b"true"),
            (b"access-control-expose-headers", EXPOSED_HEADERS),
        ]

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *grant]}
            await send(message)

        await self.app(scope, receive, send_wrapper)
