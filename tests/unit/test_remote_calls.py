"""The per-tenant cap, the deadlines and the per-tenant threads of calls to tenants' services."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
import uuid
from collections.abc import AsyncIterator

import pytest

from connectors.base import TimedOut
from gateway.connections.remote import ConnectorBusy, RemoteCalls, TenantRoutingExecutor


async def _never() -> None:
    await asyncio.Event().wait()


async def test_a_tenant_over_its_cap_is_refused_at_once_and_other_tenants_are_not() -> None:
    calls = RemoteCalls(timeout=1, per_tenant=2)
    a, b = uuid.uuid4(), uuid.uuid4()
    first, second = calls.acquire(a), calls.acquire(a)
    with pytest.raises(ConnectorBusy) as refused:
        calls.acquire(a)
    assert refused.value.status == 429 and refused.value.headers["Retry-After"] == "1"
    calls.acquire(b).release()  # another tenant's calls are not counted against a
    first.release()
    first.release()  # a stream may end several ways: releasing twice frees one slot, once
    assert calls.in_flight(a) == 1
    calls.acquire(a)
    with pytest.raises(ConnectorBusy):
        calls.acquire(a)
    second.release()


async def test_a_call_that_never_answers_ends_at_its_deadline_with_connector_timeout() -> None:
    calls = RemoteCalls(timeout=0.2, per_tenant=1)
    started = time.monotonic()
    with pytest.raises(TimedOut) as timed_out:
        async with calls.slot(uuid.uuid4()), calls.deadline():
            await _never()
    assert timed_out.value.code == "connector_timeout" and timed_out.value.retryable
    assert time.monotonic() - started < 1


async def test_an_upload_that_keeps_moving_outlives_the_deadline_and_one_that_stalls_does_not() -> None:
    calls = RemoteCalls(timeout=0.3, per_tenant=1)

    async def source(stall_after: int | None) -> AsyncIterator[bytes]:
        for i in range(8):
            if i == stall_after:
                await _never()
            await asyncio.sleep(0.1)
            yield b"x"

    async def consume(chunks: AsyncIterator[bytes]) -> int:
        return sum([len(c) async for c in chunks])

    async with calls.deadline() as deadline:  # 0.8 s in all, 0.1 s between two chunks
        assert await consume(deadline.paced(source(None))) == 8
    with pytest.raises(TimedOut):
        async with calls.deadline() as deadline:
            await consume(deadline.paced(source(3)))


async def test_a_download_that_stalls_ends_and_frees_its_slot() -> None:
    calls = RemoteCalls(timeout=0.2, per_tenant=1)
    tenant = uuid.uuid4()
    closed: list[str] = []

    async def chunks() -> AsyncIterator[bytes]:
        yield b"first"
        await _never()
        yield b"never"

    async def close() -> None:
        closed.append("connector")

    download = calls.download(chunks(), slot=calls.acquire(tenant), close=close)
    assert await anext(download) == b"first"
    with pytest.raises(TimedOut):
        await anext(download)
    assert closed == ["connector"] and calls.in_flight(tenant) == 0
    with pytest.raises(StopAsyncIteration):
        await anext(download)


async def test_a_download_nobody_reads_still_frees_its_slot() -> None:
    calls = RemoteCalls(timeout=1, per_tenant=1)
    tenant = uuid.uuid4()

    async def chunks() -> AsyncIterator[bytes]:
        yield b"x"

    async def close() -> None:
        return None

    download = calls.download(chunks(), slot=calls.acquire(tenant), close=close)
    assert calls.in_flight(tenant) == 1
    del download  # a HEAD request, a client gone before the body: the response is dropped unread
    gc.collect()
    assert calls.in_flight(tenant) == 0
    closed = calls.download(chunks(), slot=calls.acquire(tenant), close=close)
    await closed.aclose()
    assert calls.in_flight(tenant) == 0


async def test_threads_stuck_in_one_tenants_calls_are_that_tenants_own() -> None:
    loop = asyncio.get_running_loop()
    calls = RemoteCalls(timeout=0.2, per_tenant=2)
    calls.install(loop)
    assert isinstance(loop._default_executor, TenantRoutingExecutor)  # type: ignore[attr-defined]
    stuck = threading.Event()
    a, b = uuid.uuid4(), uuid.uuid4()
    try:
        # Tenant a's SDK calls block their threads, and keep them after the deadline gave up on them: more
        # calls than the shared pool has threads (min(32, cpus + 4)).
        for _ in range(8):
            with pytest.raises(TimedOut):
                async with calls.slot(a), calls.deadline():
                    await asyncio.to_thread(stuck.wait)
        # a has two threads, both stuck: its next call waits for one and times out; b's runs at once.
        with pytest.raises(TimedOut):
            async with calls.slot(a), calls.deadline():
                await asyncio.to_thread(lambda: None)
        async with calls.slot(b), calls.deadline():
            assert await asyncio.to_thread(threading.current_thread) is not None
        # Work outside any tenant's call (uploads, scans) runs on the shared threads.
        for _ in range(4):
            await asyncio.wait_for(asyncio.to_thread(lambda: None), 1)
    finally:
        stuck.set()
    await asyncio.sleep(0.2)
    assert calls._threads == {}  # idle again: a's threads are let go
