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
- A deadline cancels the coroutine, not the worker thread a blocking SDK (boto3, office365) is stuck in:
  that thread stays taken until the SDK's own timeouts end it. So the blocking work of a tenant's calls
  runs on that tenant's own threads (at most `per_tenant`), never on the ones every other tenant's
  connectors, uploads and scans share: `TenantRoutingExecutor`, the loop's default executor, sends what
  `asyncio.to_thread` submits inside a tenant's call to that tenant's `TenantThreads`.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from typing import Any

import structlog

from connectors.base import TimedOut
from gateway.errors import FilegateError

log = structlog.get_logger("filegate.connections")
# The threads of the tenant whose remote call the current task is making, if any.
_TENANT_THREADS: ContextVar[TenantThreads | None] = ContextVar("filegate_tenant_threads", default=None)
BUSY_RETRY_AFTER = 1  # seconds: a slot frees as soon as one of the tenant's calls ends
CLOSE_TIMEOUT = 5.0


async def close_quietly(close: Callable[[], Awaitable[None]]) -> None:
    """Close a connector or a stream, best effort and bounded, on the shared threads (closing a client
    does not wait for the service, while the tenant's own threads may all be stuck on it)."""
    token = _TENANT_THREADS.set(None)
    try:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await close()
    finally:
        _TENANT_THREADS.reset(token)


class TenantThreads:
    """One tenant's worker threads for its remote calls: at most `size`, however many are stuck."""

    def __init__(self, size: int, on_idle: Callable[[], None]) -> None:
        self._pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix="filegate-remote")
        self._lock = threading.Lock()
        self._busy = 0
        self._on_idle = on_idle  # called in a worker thread when the last piece of work ends

    @property
    def busy(self) -> int:
        with self._lock:
            return self._busy

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        with self._lock:
            self._busy += 1
        try:
            future = self._pool.submit(fn, *args, **kwargs)
        except BaseException:
            with self._lock:
                self._busy -= 1
            raise
        future.add_done_callback(self._done)
        return future

    def _done(self, _: Future[Any]) -> None:
        with self._lock:
            self._busy -= 1
            idle = self._busy == 0
        if idle:
            self._on_idle()

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False)


class TenantRoutingExecutor(ThreadPoolExecutor):
    """The event loop's default executor: work submitted while a task makes a tenant's remote call (the
    SDK's blocking calls under `asyncio.to_thread`) runs on that tenant's threads; the rest on the shared
    ones. Installed once per process by `RemoteCalls.install`."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        threads = _TENANT_THREADS.get()
        if threads is not None:
            with contextlib.suppress(RuntimeError):  # let go already (a late close): the shared threads
                return threads.submit(fn, *args, **kwargs)
        return super().submit(fn, *args, **kwargs)


class ConnectorBusy(FilegateError):
    code = "connector_busy"
    status = 429
    title = "Too many calls to this tenant's services at once"


class Slot:
    """One of a tenant's in-flight calls. `release` may be called more than once (a stream ends many ways)."""

    __slots__ = ("_calls", "_held", "_tenant_id", "threads")

    def __init__(self, calls: RemoteCalls, tenant_id: uuid.UUID, threads: TenantThreads) -> None:
        self._calls = calls
        self._tenant_id = tenant_id
        self.threads = threads
        self._held = True

    @contextmanager
    def on_own_threads(self) -> Iterator[None]:
        """Blocking work submitted to the default executor in here runs on the tenant's threads."""
        token = _TENANT_THREADS.set(self.threads)
        try:
            yield
        finally:
            _TENANT_THREADS.reset(token)

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
        self._threads: dict[uuid.UUID, TenantThreads] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        """Route this loop's default executor by tenant (the gateway's lifespan, the worker's startup)."""
        self._loop = loop
        loop.set_default_executor(TenantRoutingExecutor(thread_name_prefix="filegate"))

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
        threads = self._threads.get(tenant_id)
        if threads is None:
            threads = self._threads[tenant_id] = TenantThreads(
                self.per_tenant, lambda: self._idle_soon(tenant_id)
            )
        return Slot(self, tenant_id, threads)

    def _release(self, tenant_id: uuid.UUID) -> None:
        left = self._in_flight.get(tenant_id, 0) - 1
        if left > 0:
            self._in_flight[tenant_id] = left
        else:
            self._in_flight.pop(tenant_id, None)
            self._drop_if_idle(tenant_id)

    def _idle_soon(self, tenant_id: uuid.UUID) -> None:
        # From a worker thread: the dicts belong to the loop's thread.
        if self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._drop_if_idle, tenant_id)

    def _drop_if_idle(self, tenant_id: uuid.UUID) -> None:
        # A tenant's threads live while it has a call in flight or a thread still busy (stuck), so a tenant
        # never gets a second set while the first is tied up; idle ones are let go.
        threads = self._threads.get(tenant_id)
        if threads is not None and tenant_id not in self._in_flight and threads.busy == 0:
            del self._threads[tenant_id]
            threads.shutdown()

    @asynccontextmanager
    async def slot(self, tenant_id: uuid.UUID) -> AsyncIterator[None]:
        """One of the tenant's calls, its blocking work on the tenant's own threads."""
        slot = self.acquire(tenant_id)
        try:
            with slot.on_own_threads():
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
            with self._slot.on_own_threads():
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
        # Shielded: a cancelled stream (the client left) still closes, in the background, and frees the
        # slot when it is done.
        self._closing = asyncio.ensure_future(self._close_all())
        await asyncio.shield(self._closing)

    async def _close_all(self) -> None:
        try:
            aclose = getattr(self._chunks, "aclose", None)
            if aclose is not None:
                await close_quietly(aclose)
            await self._close()
        finally:
            self._slot.release()

    def __del__(self) -> None:
        if not self._closed:
            self._slot.release()
