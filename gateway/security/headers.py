"""Request ids and security headers on every response, as pure ASGI middleware (cheap on the hot path)."""

from __future__ import annotations

import re
import secrets
import time

import structlog
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

log = structlog.get_logger("filegate.http")

_REQUEST_ID = re.compile(r"\A[A-Za-z0-9._-]{1,128}\Z")

# `sandbox`: even a served file opened directly in a browser cannot run script or reach our origin.
API_CSP = b"default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'; sandbox"
# The docs page loads its renderer script; it is never served with tokens.
DOCS_CSP = (
    b"default-src 'none'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    b"style-src 'self' 'unsafe-inline' https://fonts.googleapis.com; font-src https://fonts.gstatic.com; "
    b"img-src 'self' data: https://cdn.redoc.ly; connect-src 'self'; worker-src blob:; frame-ancestors 'none'"
)
# The browser app (/app/): its own bundled script and styles only, nothing inline (Uppy styles through the
# CSSOM, which style-src does not govern); thumbnails are blob: URLs, Uppy's icons data: URLs.
APP_CSP = (
    b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    b"connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
APP_PREFIX = "/app/"

_BASE_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
]
HSTS = (b"strict-transport-security", b"max-age=63072000; includeSubDomains")
# tus requires Tus-Resumable on every answer, errors included; those are built by the exception handler,
# outside any route's middleware, so the edge adds it.
TUS_PREFIX = "/v1/tus"
TUS_RESUMABLE = (b"tus-resumable", b"1.0.0")


def request_id_for(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            try:
                candidate = value.decode("ascii")
            except UnicodeDecodeError:
                break
            if _REQUEST_ID.match(candidate):
                return candidate
            break
    return secrets.token_hex(16)


class EdgeMiddleware:
    """X-Request-ID, security headers, `Cache-Control: no-store` on API responses, and one access log line."""

    def __init__(self, app: ASGIApp, *, hsts: bool) -> None:
        self.app = app
        self.hsts = hsts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        rid = request_id_for(scope)
        scope.setdefault("state", {})["request_id"] = rid
        path: str = scope.get("path", "")
        is_docs = path == "/schema" or (path.startswith("/schema/") and not path.endswith(".json"))
        is_tus = path.startswith(TUS_PREFIX)
        csp = DOCS_CSP if is_docs else APP_CSP if path.startswith(APP_PREFIX) else API_CSP
        started = time.perf_counter()
        status_holder: dict[str, int] = {}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                headers: list[tuple[bytes, bytes]] = [
                    (k, v) for k, v in message.get("headers", []) if k.lower() not in _OVERRIDDEN
                ]
                headers.append((b"x-request-id", rid.encode()))
                headers.extend(_BASE_HEADERS)
                headers.append((b"content-security-policy", csp))
                # Every API answer may carry a token or personal data: no cache may keep it.
                headers.append((b"cache-control", b"no-store"))
                if self.hsts:
                    headers.append(HSTS)
                if is_tus and not any(k == b"tus-resumable" for k, _ in headers):
                    headers.append(TUS_RESUMABLE)
                message = {**message, "headers": headers}
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=rid):
            try:
                await self.app(scope, receive, send_wrapper)
            finally:
                # The path only: query strings may carry cursors or tokens.
                log.info(
                    "http.request",
                    method=scope.get("method"),
                    path=path[:200],
                    status=status_holder.get("status"),
                    duration_ms=round((time.perf_counter() - started) * 1000, 2),
                )


_OVERRIDDEN = {
    b"x-request-id",
    b"content-security-policy",
    b"cache-control",
    b"x-content-type-options",
    b"referrer-policy",
    b"x-frame-options",
    b"strict-transport-security",
}
