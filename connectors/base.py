"""What every storage connector offers, and the errors it may raise.

A connector works on FULL object keys (already confined by `connectors.paths.ObjectRoot`); it never decides
what a tenant may reach. Its errors carry a stable `code` and a `detail` that is safe to show: it never
holds a secret, a signed URL, a token or the SDK's raw message (which may contain any of those).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

CHUNK = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    key: str
    size: int
    modified_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ObjectPage:
    items: list[ObjectInfo]
    cursor: str | None  # opaque; pass back to get the next page, None at the end


@dataclass(frozen=True, slots=True)
class Published:
    """What a publishing connector (Instagram) made of an upload."""

    media_id: str
    container_id: str


class ConnectorError(Exception):
    """A failure at (or on the way to) the remote service. `detail` is safe to show and to log."""

    code = "connector_error"
    retryable = False

    def __init__(self, detail: str, *, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after = retry_after


class ObjectNotFound(ConnectorError):
    code = "object_not_found"


class InvalidKey(ConnectorError):
    """A key that would leave the connection's root, or that the service cannot store."""

    code = "invalid_key"


class AuthFailed(ConnectorError):
    """The service refused the connection's credentials (or their rights are not enough)."""

    code = "connector_auth_failed"


class Throttled(ConnectorError):
    code = "connector_throttled"
    retryable = True


class Unavailable(ConnectorError):
    """The service could not be reached or answered with a server error."""

    code = "connector_unavailable"
    retryable = True


class TimedOut(ConnectorError):
    """The service took longer than the caller's deadline (a tarpit, a stalled transfer)."""

    code = "connector_timeout"
    retryable = True


class Rejected(ConnectorError):
    """The service understood the request and refused it for good (bad media, bad config, quota)."""

    code = "connector_rejected"


class Unsupported(ConnectorError):
    code = "unsupported_operation"


@runtime_checkable
class Connector(Protocol):
    """Object storage: S3, Azure Blob, SharePoint, a local directory."""

    async def put(
        self, key: str, chunks: AsyncIterator[bytes], *, size: int, content_type: str | None
    ) -> ObjectInfo:
        """Store `chunks` (exactly `size` bytes) at `key`, replacing what is there; streamed, never whole."""
        ...

    def get(self, key: str) -> AsyncIterator[bytes]:
        """The object's bytes, streamed; `ObjectNotFound` (raised on the first iteration) if absent."""
        ...

    async def stat(self, key: str) -> ObjectInfo:
        """`ObjectNotFound` if absent."""
        ...

    async def list(self, prefix: str, *, cursor: str | None, limit: int) -> ObjectPage:
        """Objects whose key starts with `prefix` (a full key prefix), at most `limit`, in key order."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the object; absent is not an error."""
        ...

    async def test(self) -> str:
        """One real round trip that proves the credentials and the target; answers a safe detail."""
        ...

    async def aclose(self) -> None: ...


@runtime_checkable
class Publisher(Protocol):
    """A social publishing target (Instagram): it fetches the media itself from a URL we sign."""

    async def publish(self, *, media_url: str, media_type: str, caption: str | None) -> Published: ...

    async def test(self) -> str: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class TokenRefresher(Protocol):
    """A connector whose long-lived token must be exchanged for a fresh one before it expires."""

    async def refresh_token(self) -> tuple[str, int]:
        """A new token and its lifetime in seconds; the old one may stop working."""
        ...
