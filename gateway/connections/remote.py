"""Calls to a tenant's own services (its bucket, container, SharePoint, Instagram), bounded.

The tenant chooses the service, so the service decides how long a call takes. Three rules keep a slow or
silent one (a "tarpit" that accepts a connection and never answers) its own tenant's problem:
- No database transaction, hence no pooled connection, is open while a call runs: callers read what they
  need in a short transaction, call out through here, then record the outcome in another.
- A tenant has at most `per_tenant` calls in flight in this process (what a call ties up, worker threads,
  job slots, sockets, is per process); one more is refused at once with 429 `connector_busy`, never queued.
- Every call has a deadline: 504 `connector_timeout` (`connectors.base.TimedOut`, which a delivery
  retries). A streamed transfer has one between two chunks instead, so a large file takes as long as it
  needs while it keeps moving.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import structlog

from connectors.base import TimedOut
from gateway.errors import FilegateError

log = structlog.get_logger("filegate.connections")
BUSY_RETRY_AFTER = 1  # seconds: a slot frees as soon as one of the tenant's calls ends
CLOSE_TIMEOUT = 5.0


async def close_quietly(close: Callable[[], Awaitable[None]]) -> None:
    """Close a connector or a stream, best effort and bounded: one whose worker threads are stuck on a
    silent service is left to the garbage collector rather than holding up its caller."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(CLOSE_TIMEOUT):
            await close()


class ConnectorBusy(FilegateError):
    code = "connector_busy"
    status = 429
    title = "Too many calls to this tenant's services at once"


class Slot:
    """One of a tenant's in-flight calls. `release` may be called more than once (a stream ends many ways)."""

    __slots__ = ("_calls", "_held", "_tenant_id")

    def __init__(self, calls: RemoteCalls, tenant_id: uuid.UUID) -> None:
        self._calls = calls
        self._tenant_id = tenant_id
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._calls._release(self._tenant_id)


class Deadline:
    """The deadline of one call; `paced` turns it into a deadline between two chunks of an upload."""

    def __init__(self, timeout: asyncio.Timeout, seconds: float) -> None:
        self._timeout = timeout
        self._seconds = seconds

    def extend(self) -> None:
        self._timeout.reschedule(asyncio.get_running_loop().time() + self._seconds)

    async def paced(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """`chunks`, each one the callee takes moving the deadline on: progress buys time, silence does not."""
        async for chunk in chunks:
            self.extend()
            yield chunk


class RemoteCalls:
    """The per-tenant cap and the deadlines of one process's calls to tenants' services."""

    def __init__(self, *, timeout: float, per_tenant: int) -> None:
        self.timeout = timeout
        self.per_tenant = per_tenant
        self._in_flight: dict[uuid.UUID, int] = {}

    def in_flight(self, tenant_id: uuid.UUID) -> int:
        return self._in_flight.get(tenant_id, 0)

    def acquire(self, tenant_id: uuid.UUID) -> Slot:
        """A slot for one call, or ConnectorBusy at once when the tenant has `per_tenant` in flight."""
        held = self._in_flight.get(tenant_id, 0)
        if held >= self.per_tenant:
            log.warning("connector.busy", tenant_id=str(tenant_id), in_flight=held)
            raise ConnectorBusy(
                f"at most {self.per_tenant} calls to this tenant's services may run at once; retry shortly",
                headers={"Retry-After": str(BUSY_RETRY_AFTER)},
            )
        self._in_flight[tenant_id] = held + 1
        return Slot(self, tenant_id)

    def _release(self, tenant_id: uuid.UUID) -> None:
        left = self._in_flight.get(tenant_id, 0) - 1
        if left > 0:
            self._in_flight[tenant_id] = left
        else:
            self._in_flight.pop(tenant_id, None)

    @asynccontextmanager
    async def slot(self, tenant_id: uuid.UUID) -> AsyncIterator[None]:
        slot = self.acquire(tenant_id)
        try:
            yield
        finally:
            slot.release()

    @asynccontextmanager
    async def deadline(self, seconds: float | None = None) -> AsyncIterator[Deadline]:
        """`seconds` (FILEGATE_CONNECTOR_TIMEOUT by default) for what runs inside; then TimedOut."""
        limit = seconds if seconds is not None else self.timeout
        try:
            async with asyncio.timeout(limit) as timeout:
                yield Deadline(timeout, limit)
        except TimeoutError:
            raise TimedOut(f"the service did not answer within {limit:g} s") from None

    def download(
        self, chunks: AsyncIterator[bytes], *, slot: Slot, close: Callable[[], Awaitable[None]]
    ) -> Download:
        return Download(chunks, idle=self.timeout, slot=slot, close=close)


class Download:
    """A remote object's bytes, streamed after the handler has returned (and its transaction committed).

    Each chunk has `idle` seconds to arrive. The tenant's slot is held until the stream ends, fails or is
    dropped (the client went away, a HEAD request never reads it): `aclose`, or at the latest `__del__`.
    """

    def __init__(
        self,
        chunks: AsyncIterator[bytes],
        *,
        idle: float,
        slot: Slot,
        close: Callable[[], Awaitable[None]],
    ) -> None:
        self._chunks = chunks
        self._idle = idle
        self._slot = slot
        self._close = close
        self._closed = False
        self._closing: asyncio.Future[None] | None = None

    def __aiter__(self) -> Download:
        return self

    async def __anext__(self) -> bytes:
        if self._closed:
            raise StopAsyncIteration
        try:
            async with asyncio.timeout(self._idle):
                return await anext(self._chunks)
        except TimeoutError:
            await self.aclose()
            raise TimedOut(f"the service sent nothing for {self._idle:g} s") from None
        except BaseException:
            await self.aclose()
            raise

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._slot.release()
        # Shielded: a cancelled stream (the client left) still closes the connector, in the background.
        self._closing = asyncio.ensure_future(self._close_all())
        await asyncio.shield(self._closing)

    async def _close_all(self) -> None:
        aclose = getattr(self._chunks, "aclose", None)
        if aclose is not None:
            await close_quietly(aclose)
        await self._close()

    def __del__(self) -> None:
        if not self._closed:
            self._slot.release()
