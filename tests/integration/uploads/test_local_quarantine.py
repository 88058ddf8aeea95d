"""The local quarantine's write path: offsets, replacement, refusals, cancellation, extra hashers."""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import os
import threading
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.uploads import quarantine
from gateway.uploads.quarantine import LimitExceeded, LocalQuarantine, OffsetBeyondEnd

MiB = 1024 * 1024


def new_key() -> str:
    return f"{uuid.uuid4()}/{uuid.uuid4()}"


async def chunked(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def test_a_large_write_is_whole_hashed_and_private(tmp_path: Path) -> None:
    store = LocalQuarantine(tmp_path / "q")
    key = new_key()
    data = os.urandom(5 * MiB + 12345)  # several blocks, several writeback ranges, an odd tail
    extra = hashlib.sha1()
    written, digest = await store.write(key, chunked(data, 300 * 1024), limit=len(data), hashers=[extra])
    assert (written, digest) == (len(data), hashlib.sha256(data).hexdigest())
    assert extra.hexdigest() == hashlib.sha1(data).hexdigest()
    assert store.local_path(key).read_bytes() == data
    assert store.local_path(key).stat().st_mode & 0o777 == 0o600


async def test_a_write_at_an_offset_replaces_what_lies_past_it(tmp_path: Path) -> None:
    """A retried tus PATCH: what a request that died left past the database's offset goes."""
    store = LocalQuarantine(tmp_path / "q")
    key = new_key()
    await store.write(key, chunked(b"a" * 100), limit=1000)
    await store.write(key, chunked(b"stale" * 40), limit=1000, offset=100, durable=False)
    assert await store.size(key) == 300
    running = hashlib.sha256(b"a" * 100)
    assert await store.write(key, chunked(b"n" * 50), limit=1000, offset=100, hashers=[running]) == (50, None)
    assert store.local_path(key).read_bytes() == b"a" * 100 + b"n" * 50
    assert running.hexdigest() == hashlib.sha256(b"a" * 100 + b"n" * 50).hexdigest()
    await store.seal(key)
    assert await store.sha256(key) == running.hexdigest()


async def test_a_write_past_the_stored_bytes_is_refused(tmp_path: Path) -> None:
    """After a host crash the database may count bytes the disk lost: no hole of zeros is ever written."""
    store = LocalQuarantine(tmp_path / "q")
    key = new_key()
    await store.write(key, chunked(b"x" * 10), limit=100)
    with pytest.raises(OffsetBeyondEnd) as refused:
        await store.write(key, chunked(b"y" * 10), limit=100, offset=20)
    assert refused.value.size == 10
    assert store.local_path(key).read_bytes() == b"x" * 10
    missing = new_key()
    with pytest.raises(OffsetBeyondEnd):
        await store.write(missing, chunked(b"y"), limit=100, offset=5)
    assert not store.local_path(missing).exists()


async def test_refused_and_cancelled_writes_leave_nothing_behind(tmp_path: Path) -> None:
    store = LocalQuarantine(tmp_path / "q")
    key = new_key()
    with pytest.raises(LimitExceeded):
        await store.write(key, chunked(os.urandom(3 * MiB)), limit=2 * MiB)
    assert not store.local_path(key).exists()

    await store.write(key, chunked(b"base"), limit=100 * MiB)
    arrived = asyncio.Event()

    async def endless() -> AsyncIterator[bytes]:
        while True:
            yield os.urandom(256 * 1024)
            arrived.set()
            await asyncio.sleep(0)

    task = asyncio.create_task(store.write(key, endless(), limit=100 * MiB, offset=4, durable=False))
    await arrived.wait()
    await asyncio.sleep(0.05)  # several blocks handed to the writer thread
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert store.local_path(key).read_bytes() == b"base"


async def test_a_failed_verify_undoes_the_write(tmp_path: Path) -> None:
    store = LocalQuarantine(tmp_path / "q")
    key = new_key()
    await store.write(key, chunked(b"base"), limit=100)

    def verify() -> None:
        raise ValueError("checksum")

    with pytest.raises(ValueError, match="checksum"):
        await store.write(key, chunked(os.urandom(2 * MiB)), limit=4 * MiB, offset=4, verify=verify)
    assert store.local_path(key).read_bytes() == b"base"


async def test_writev_handles_short_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.writev

    def short(fd: int, buffers: list[memoryview]) -> int:
        return real(fd, [buffers[0][: max(1, len(buffers[0]) // 3)]])  # a third of the first buffer only

    monkeypatch.setattr(quarantine.os, "writev", short)
    path = tmp_path / "f"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        quarantine._writev_all(fd, [b"abcdef", b"", b"ghi", b"j" * 1000])
    finally:
        os.close(fd)
    assert path.read_bytes() == b"abcdefghi" + b"j" * 1000


async def test_a_write_cancelled_after_its_file_closed_is_still_undone(tmp_path: Path) -> None:
    """A tus PATCH closes its file in the thread with its last block; cancelled just then, it is rolled back
    by path."""
    store = LocalQuarantine(tmp_path / "q")
    key = new_key()
    await store.write(key, chunked(b"base"), limit=100)
    path = store.local_path(key)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    sink = quarantine._Sink(fd, 4, [])
    sink.write([b"late"], last=True, close=True)
    assert sink.fd == -1
    assert path.read_bytes() == b"baselate"
    quarantine._abort(sink, path, 4)
    assert path.read_bytes() == b"base"


async def test_an_upload_cut_while_its_block_waits_for_a_thread_is_cleaned_not_hung(tmp_path: Path) -> None:
    """Under load a block handed to the writer can wait for a free thread; a client that disconnects then
    cancels the write. The block must still be written (or the cleanup would wait for it for ever, holding a
    thread: the whole process hung once its threads were gone) and the partial file must go."""
    loop = asyncio.get_running_loop()
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    loop.set_default_executor(pool)
    gate = threading.Event()
    store = LocalQuarantine(tmp_path / "q")
    key = new_key()

    async def body() -> AsyncIterator[bytes]:
        loop.run_in_executor(None, gate.wait)  # the only thread is busy from now on
        yield b"a" * MiB  # handed over: queued behind the busy thread
        yield b"b" * MiB  # the write waits for the queued block
        await asyncio.Event().wait()  # a client that never sends more
        yield b""

    task = asyncio.create_task(store.write(key, body(), limit=10 * MiB))
    await asyncio.sleep(0.2)
    task.cancel()
    await asyncio.sleep(0.1)
    gate.set()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 10)
    assert not store.local_path(key).exists()
    loop.set_default_executor(concurrent.futures.ThreadPoolExecutor())
    pool.shutdown(wait=True)
