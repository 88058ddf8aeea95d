"""One error root with stable codes, mapped to RFC 9457 problem responses in one place."""

from __future__ import annotations

from typing import Any

import msgspec
import structlog
from litestar import Request, Response
from litestar.exceptions import (
    HTTPException,
    InternalServerException,
    NotAuthorizedException,
    PermissionDeniedException,
    ValidationException,
)
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from connectors.base import ConnectorError
from tenants.inputs import InvalidInput

log = structlog.get_logger("filegate.errors")

PROBLEM_MEDIA_TYPE = "application/problem+json"
TYPE_BASE = "https://filegate.dev/problems/"


class FilegateError(Exception):
    """The root of every error a client may see; `code` is stable, `detail` is safe to show."""

    code: str = "internal_error"
    status: int = 500
    title: str = "Internal server error"

    def __init__(
        self, detail: str | None = None, *, headers: dict[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.headers = headers or {}
        self.extra = extra


class ValidationFailed(FilegateError):
    code = "validation_failed"
    status = 400
    title = "Request validation failed"


class Unauthenticated(FilegateError):
    code = "unauthenticated"
    status = 401
    title = "Authentication required"


class InvalidToken(FilegateError):
    code = "invalid_token"
    status = 401
    title = "Invalid or expired credentials"


class InvalidCredentials(FilegateError):
    code = "invalid_credentials"
    status = 401
    title = "Invalid credentials"


class MfaRequired(FilegateError):
    code = "mfa_required"
    status = 401
    title = "A TOTP code is required"


class InvalidTotp(FilegateError):
    code = "invalid_totp"
    status = 401
    title = "Invalid TOTP code"


class TokenReused(FilegateError):
    code = "token_reused"
    status = 401
    title = "Refresh token was already used"


class Forbidden(FilegateError):
    code = "forbidden"
    status = 403
    title = "Forbidden"


class NotFound(FilegateError):
    code = "not_found"
    status = 404
    title = "Not found"


class Conflict(FilegateError):
    code = "conflict"
    status = 409
    title = "Conflict"


class BodyTooLarge(FilegateError):
    code = "body_too_large"
    status = 413
    title = "Request body too large"


class ClientDisconnected(FilegateError):
    """The client went away before its body was complete: its problem, logged as one quiet line."""

    code = "client_disconnected"
    status = 400
    title = "The client disconnected before the body was complete"


class BodyTimeout(ClientDisconnected):
    """No part of the body arrived within the idle timeout; handled exactly like a cut body."""

    code = "request_timeout"
    status = 408
    title = "The request body stopped arriving"

    def __init__(self, detail: str | None = None) -> None:
        # The body was not read to its end: the connection cannot carry another request.
        super().__init__(detail, headers={"Connection": "close"})


class UnsupportedMediaType(FilegateError):
    code = "unsupported_media_type"
    status = 415
    title = "Unsupported media type"


class AccountLocked(FilegateError):
    code = "account_locked"
    status = 423
    title = "Account temporarily locked"


class RateLimited(FilegateError):
    code = "rate_limited"
    status = 429
    title = "Too many requests"


class ServiceUnavailable(FilegateError):
    code = "service_unavailable"
    status = 503
    title = "Service unavailable"


# Framework errors by status, for the ones Litestar raises itself (routing, body parsing, limits).
_BY_STATUS: dict[int, tuple[str, str]] = {
    400: ("validation_failed", "Request validation failed"),
    401: ("unauthenticated", "Authentication required"),
    403: ("forbidden", "Forbidden"),
    404: ("not_found", "Not found"),
    405: ("method_not_allowed", "Method not allowed"),
    406: ("not_acceptable", "Not acceptable"),
    409: ("conflict", "Conflict"),
    413: ("body_too_large", "Request body too large"),
    415: ("unsupported_media_type", "Unsupported media type"),
    429: ("rate_limited", "Too many requests"),
}


class Problem(msgspec.Struct, kw_only=True):
    """RFC 9457 problem details with Filegate's stable `code` and the request id."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    request_id: str | None = None
    errors: list[dict[str, str]] | msgspec.UnsetType = msgspec.UNSET


def problem_response(
    request: Request[Any, Any, Any],
    *,
    status: int,
    code: str,
    title: str,
    detail: str,
    headers: dict[str, str] | None = None,
    errors: list[dict[str, str]] | None = None,
) -> Response[Problem]:
    body = Problem(
        type=TYPE_BASE + code,
        title=title,
        status=status,
        detail=detail,
        code=code,
        request_id=request.scope.get("state", {}).get("request_id"),
        errors=errors if errors else msgspec.UNSET,
    )
    return Response(content=body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def handle_filegate_error(request: Request[Any, Any, Any], exc: FilegateError) -> Response[Problem]:
    if isinstance(exc, ClientDisconnected):
        log.info("http.client_disconnected", code=exc.code, path=request.url.path)
    return problem_response(
        request, status=exc.status, code=exc.code, title=exc.title, detail=exc.detail, headers=exc.headers
    )


def _validation_errors(extra: Any) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    if isinstance(extra, list):
        for item in extra[:20]:
            if isinstance(item, dict):
                out.append(
                    {"message": str(item.get("message", ""))[:300], "key": str(item.get("key", ""))[:100]}
                )
    return out


def handle_invalid_input(request: Request[Any, Any, Any], exc: InvalidInput) -> Response[Problem]:
    """A value the domain refused (an email with invisible characters, a timestamp out of range)."""
    return handle_filegate_error(request, ValidationFailed(str(exc)))


def handle_http_exception(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Problem]:
    status = exc.status_code
    if isinstance(exc, InternalServerException) and "disconnected" in str(exc.detail):
        # Litestar's word for a client that went away mid-body, wherever the body was read.
        return handle_filegate_error(request, ClientDisconnected())
    if status >= 500:
        return handle_unexpected(request, exc)
    code, title = _BY_STATUS.get(status, ("bad_request", "Bad request"))
    if isinstance(exc, NotAuthorizedException):
        code, title = "unauthenticated", "Authentication required"
    elif isinstance(exc, PermissionDeniedException):
        code, title = "forbidden", "Forbidden"
    detail = title
    errors: list[dict[str, str]] = []
    if isinstance(exc, ValidationException) or status == 400:
        code, title = "validation_failed", "Request validation failed"
        errors = _validation_errors(exc.extra)
        # Litestar's own detail names only the route; the first field error says what is wrong.
        detail = (
            errors[0]["message"] if errors and errors[0]["message"] else _safe_detail(exc.detail) or title
        )
    headers = {k: v for k, v in (exc.headers or {}).items() if k.lower() in ("allow", "retry-after")}
    return problem_response(
        request, status=status, code=code, title=title, detail=detail, headers=headers, errors=errors
    )


def _safe_detail(detail: str) -> str:
    # Litestar's messages name the field and the rule; they never hold the submitted value. Bound them.
    return detail[:300]


def handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Problem]:
    log.error("http.unhandled_error", error_type=type(exc).__name__, path=request.url.path, exc_info=exc)
    return problem_response(
        request,
        status=HTTP_500_INTERNAL_SERVER_ERROR,
        code="internal_error",
        title="Internal server error",
        detail="An unexpected error occurred. Quote the request id when reporting it.",
    )


def handle_dependency_down(request: Request[Any, Any, Any], exc: Exception) -> Response[Problem]:
    """A lost database or Redis connection, or no free connection in the pool within
    FILEGATE_DATABASE_POOL_TIMEOUT, is the service being unavailable, not a bug: 503, retry soon."""
    if isinstance(exc, DBAPIError) and not exc.connection_invalidated:
        return handle_unexpected(request, exc)
    log.warning("http.dependency_unavailable", error_type=type(exc).__name__, path=request.url.path)
    return problem_response(
        request,
        status=503,
        code="service_unavailable",
        title="Service unavailable",
        detail="A backing service is unavailable; retry shortly.",
        headers={"Retry-After": "2"},
    )


# A connector's failure as the client sees it: the remote service's problem is a 502/503, never a 500.
_CONNECTOR_STATUS: dict[str, tuple[int, str]] = {
    "object_not_found": (404, "Object not found"),
    "invalid_key": (400, "Key not allowed"),
    "connector_auth_failed": (502, "The destination refused the connection's credentials"),
    "connector_throttled": (503, "The destination is throttling requests"),
    "connector_unavailable": (502, "The destination is unavailable"),
    "connector_timeout": (504, "The destination did not answer in time"),
    "connector_rejected": (422, "The destination refused the request"),
    "unsupported_operation": (409, "Not supported by this kind of connection"),
}


def handle_connector_error(request: Request[Any, Any, Any], exc: ConnectorError) -> Response[Problem]:
    status, title = _CONNECTOR_STATUS.get(exc.code, (502, "The destination failed"))
    headers = {}
    if exc.retry_after is not None or exc.retryable:
        headers["Retry-After"] = str(max(1, round(exc.retry_after or 5)))
    log.info("http.connector_error", code=exc.code, path=request.url.path)
    return problem_response(
        request, status=status, code=exc.code, title=title, detail=exc.detail, headers=headers
    )


EXCEPTION_HANDLERS: dict[Any, Any] = {
    FilegateError: handle_filegate_error,
    ConnectorError: handle_connector_error,
    InvalidInput: handle_invalid_input,
    HTTPException: handle_http_exception,
    DBAPIError: handle_dependency_down,
    PoolTimeout: handle_dependency_down,
    RedisConnectionError: handle_dependency_down,
    Exception: handle_unexpected,
}
