"""The quarantine store: where bytes wait until they are scanned. One small interface, keys per tenant.

Keys are always `<tenant_id>/<upload_id>`, built here from UUIDs and never from client input, so no
stored file can escape its tenant's prefix. The local store keeps files 0600 in 0700 directories; the S3
store (gateway/uploads/s3_quarantine.py) keeps objects `<prefix>/<tenant_id>/<upload_id>`.
`quarantine_store(settings)` is the one way to build the configured store.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import hashlib
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from connectors.private_files import FILE_MODE, private_dirs, private_root

if TYPE_CHECKING:
    from gateway.settings import Settings

WRITE_BUFFER = 1024 * 1024  # bytes handed to the writer thread at once (and at most one more in flight)
HANDOFF = 256 * 1024  # fewer bytes are handed over early, when the writer thread is idle
WRITEBACK = 8 * 1024 * 1024  # start the disk write of every this many bytes while the rest still arrives
READ_CHUNK = 1024 * 1024


class LimitExceeded(Exception):
    """More bytes arrived than allowed; what was written has been removed (or truncated back)."""


class OffsetBeyondEnd(Exception):
    """A write at an offset past the stored bytes (it would leave a hole nobody sent); nothing was written."""

    def __init__(self, size: int) -> None:
        super().__init__(f"the store holds {size} bytes")
        self.size = size


def quarantine_key(tenant_id: uuid.UUID, upload_id: uuid.UUID) -> str:
    return f"{tenant_id}/{upload_id}"


class QuarantineStore(Protocol):
    async def write(
        self,
        key: str,
        chunks: AsyncIterator[bytes],
        *,
        limit: int,
        offset: int = 0,
        verify: Callable[[], None] | None = None,
        durable: bool = True,
        hashers: Sequence[Any] = (),
    ) -> tuple[int, str | None]:
        """Write `chunks` at `offset`, at most up to `limit` bytes in all; answers (bytes written, sha256 when
        offset is 0). Whatever was stored at or past `offset` is replaced; an offset past the stored bytes is
        refused (`OffsetBeyondEnd`). `verify` runs after the last chunk and before anything is made durable:
        if it raises, the write is undone. `durable=False` (a tus PATCH) leaves making the bytes durable to
        `seal`. Every byte also goes through each of `hashers` (hashlib objects), in order."""
        ...

    def read(self, key: str) -> AsyncIterator[bytes]: ...

    async def size(self, key: str) -> int: ...

    async def delete(self, key: str) -> None: ...

    async def sha256(self, key: str) -> str: ...

    async def seal(self, key: str) -> None:
        """All bytes of an upload written at offsets have arrived: make them one durable object (before
        hashing, and before the database says the upload is complete)."""
        ...


@runtime_checkable
class SupportsLocalPath(Protocol):
    """A store whose objects are files this process can open (libmagic and clamd read them directly)."""

    def local_path(self, key: str) -> Path: ...


class LocalQuarantine:
    def __init__(self, root: Path) -> None:
        # Created (or, from an install before, tightened to) 0700; every directory below it is 0700 too.
        self.root = private_root(root.resolve())

    def local_path(self, key: str) -> Path:
        tenant, _, upload = key.partition("/")
        path = (self.root / str(uuid.UUID(tenant)) / str(uuid.UUID(upload))).resolve()
        if path.parent.parent != self.root:
            raise ValueError("key outside the quarantine root")
        return path

    async def write(
        self,
        key: str,
        chunks: AsyncIterator[bytes],
        *,
        limit: int,
        offset: int = 0,
        verify: Callable[[], None] | None = None,
        durable: bool = True,
        hashers: Sequence[Any] = (),
    ) -> tuple[int, str | None]:
        """Chunks are collected on the event loop and written (`writev`, no copy) and hashed by a thread while
        the next ones arrive; at most one block is in flight, and a block is handed over as soon as the
        thread is idle (from `HANDOFF` bytes), so little is left to hash and write after the last chunk. The
        disk write of what is written starts every `WRITEBACK` bytes (`sync_file_range`), so the one
        `fdatasync` at the end (or in `seal`) is short. A write that is neither verified nor made durable
        here closes its file in the thread, with its last bytes. (The file is open before the first chunk
        is read: a body read while many opens wait for a thread would sit in this process's memory rather
        than in the socket's buffer.)"""
        path = self.local_path(key)
        hasher = hashlib.sha256() if offset == 0 else None
        hashing = [hasher, *hashers] if hasher is not None else list(hashers)
        fd = await asyncio.to_thread(_open_at, self.root, path, offset)
        sink = _Sink(fd, offset, hashing)
        loop = asyncio.get_running_loop()
        closes = verify is None and not durable
        pending: asyncio.Future[None] | None = None
        written = 0
        try:
            batch: list[bytes] = []
            batched = 0
            async for chunk in chunks:
                written += len(chunk)
                if offset + written > limit:
                    raise LimitExceeded()
                batch.append(chunk)
                batched += len(chunk)
                if batched >= WRITE_BUFFER or (batched >= HANDOFF and (pending is None or pending.done())):
                    if pending is not None:
                        await pending
                    pending = sink.submit(loop, batch)
                    batch, batched = [], 0
            if pending is not None:
                await pending
                pending = None
            await sink.submit(loop, batch, last=True, close=closes)
            if verify is not None:
                verify()
            if durable:
                await asyncio.to_thread(os.fdatasync, sink.fd)
        except BaseException:
            # Nothing half-written survives: a fresh file goes, an appended one returns to its offset. The
            # thread may still be writing (this task was cancelled): the cleanup waits for it, shielded.
            await asyncio.shield(_undo(sink, path, offset))
            if pending is not None and pending.done() and not pending.cancelled():
                pending.exception()  # already raised or superseded; retrieved so it is not logged
            raise
        if not closes:
            await asyncio.to_thread(_close, sink.fd)
        return written, hasher.hexdigest() if hasher is not None else None

    async def read(self, key: str) -> AsyncIterator[bytes]:
        path = self.local_path(key)
        fh = await asyncio.to_thread(open, path, "rb")
        try:
            while chunk := await asyncio.to_thread(fh.read, READ_CHUNK):
                yield chunk
        finally:
            await asyncio.to_thread(fh.close)

    async def size(self, key: str) -> int:
        try:
            return (await asyncio.to_thread(self.local_path(key).stat)).st_size
        except FileNotFoundError:
            return 0

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self.local_path(key).unlink, True)

    async def sha256(self, key: str) -> str:
        return await asyncio.to_thread(_hash_file, self.local_path(key))

    async def seal(self, key: str) -> None:
        """A local file is written in place at every offset: it is one file already, made durable here (tus
        PATCHes are not synced one by one). An upload that never wrote a byte (tus `Upload-Length: 0`) gets
        its empty file here."""
        await asyncio.to_thread(_sync, self.root, self.local_path(key))


def quarantine_store(settings: Settings) -> QuarantineStore:
    """The store FILEGATE_QUARANTINE_URL names: file:///path (or the data dir's) or s3://bucket[/prefix]."""
    url = settings.scanning.quarantine_url
    if url is not None and url.startswith("s3://"):
        from gateway.uploads.s3_quarantine import S3Quarantine  # boto3 only where it is used

        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        return S3Quarantine(
            bucket,
            prefix,
            endpoint_url=settings.scanning.quarantine_endpoint,
            region=settings.scanning.quarantine_region,
        )
    return LocalQuarantine(settings.quarantine_root)


@contextlib.asynccontextmanager
async def local_copy(store: QuarantineStore, key: str, directory: Path | None = None) -> AsyncIterator[Path]:
    """A file with the content of `key` for the scanners (libmagic, the archive walker, clamd) to open.

    A local store answers its own file. Any other store's object is copied into a private temporary
    directory (0700, made in `directory`, default the system's) that is removed on the way out,
    whatever happens.
    """
    if isinstance(store, SupportsLocalPath):
        yield store.local_path(key)
        return
    parent = directory if directory is not None else Path(tempfile.gettempdir())
    await asyncio.to_thread(private_root, parent)
    scratch = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="scan-", dir=parent))
    try:
        path = scratch / "content"
        fd = await asyncio.to_thread(os.open, path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        try:
            async for chunk in store.read(key):
                await asyncio.to_thread(_write_all, fd, chunk)
        finally:
            await asyncio.to_thread(_close, fd)
        yield path
    finally:
        await asyncio.to_thread(shutil.rmtree, scratch, True)


def _sync(root: Path, path: Path) -> None:
    private_dirs(root, path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE)
    try:
        os.fdatasync(fd)
    finally:
        os.close(fd)


def _open_at(root: Path, path: Path, offset: int) -> int:
    """The file open for writing at `offset`, with nothing stored past it (a retried tus PATCH replaces what a
    request that died, or a crash, left there); never past its end, where a hole of zeros would be. Only a
    write at 0 creates the file."""
    if offset == 0:
        private_dirs(root, path.parent)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE)
    else:
        try:
            fd = os.open(path, os.O_WRONLY)
        except FileNotFoundError:
            raise OffsetBeyondEnd(0) from None
    try:
        size = os.fstat(fd).st_size
        if offset > size:
            raise OffsetBeyondEnd(size)
        if size > offset:
            os.ftruncate(fd, offset)
        os.lseek(fd, offset, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd


class _Sink:
    """The writer thread's side of a write: hashes and writes each batch at the file position, and starts the
    disk write of every `WRITEBACK` bytes. A batch handed over is always written: a caller that is cancelled
    stops waiting for it, never the write itself, and the cleanup waits for it to end (`settle`). (A write
    cancelled while it waited for a thread would never run, and a cleanup waiting for it would wait for
    ever: that hung a cut upload under load.)"""

    def __init__(self, fd: int, position: int, hashers: list[Any]) -> None:
        self.fd = fd
        self.position = position
        self.flushed = position  # where the writeback not yet started begins
        self.hashers = hashers
        self.inflight: asyncio.Future[None] | None = None

    def submit(
        self, loop: asyncio.AbstractEventLoop, batch: list[bytes], *, last: bool = False, close: bool = False
    ) -> asyncio.Future[None]:
        self.inflight = loop.run_in_executor(None, self.write, batch, last, close)
        return asyncio.shield(self.inflight)

    async def settle(self) -> None:
        """Until no batch is being written (its outcome is reported to whoever awaited it, or superseded)."""
        if self.inflight is not None:
            await asyncio.wait([self.inflight])

    def write(self, batch: list[bytes], last: bool, close: bool = False) -> None:
        for chunk in batch:
            for hasher in self.hashers:
                hasher.update(chunk)  # releases the GIL for large chunks
        if batch:
            _writev_all(self.fd, batch)
            self.position += sum(len(c) for c in batch)
        if self.position - self.flushed >= WRITEBACK or (last and self.position > self.flushed):
            _start_writeback(self.fd, self.flushed, self.position - self.flushed)
            self.flushed = self.position
        if close:
            fd, self.fd = self.fd, -1
            _close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _writev_all(fd: int, chunks: list[bytes]) -> None:
    views = [memoryview(c) for c in chunks if c]
    while views:
        n = os.writev(fd, views[:_IOV_MAX])
        while views and n >= len(views[0]):
            n -= len(views[0])
            views.pop(0)
        if n:
            views[0] = views[0][n:]


async def _undo(sink: _Sink, path: Path, offset: int) -> None:
    await sink.settle()
    await asyncio.to_thread(_abort, sink, path, offset)


def _abort(sink: _Sink, path: Path, offset: int) -> None:
    fd = sink.fd
    try:
        if offset == 0:
            path.unlink(missing_ok=True)
        elif fd >= 0:
            os.ftruncate(fd, offset)
        else:  # its last block was written and the file closed before the write was cancelled
            with contextlib.suppress(FileNotFoundError):
                reopened = os.open(path, os.O_WRONLY)
                try:
                    os.ftruncate(reopened, offset)
                finally:
                    _close(reopened)
    finally:
        if fd >= 0:
            _close(fd)


_IOV_MAX = os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 16
_SYNC_FILE_RANGE_WRITE = 2


def _load_sync_file_range() -> Callable[[int, int, int, int], int] | None:
    """Linux's sync_file_range(2) from libc, which Python does not wrap: SYNC_FILE_RANGE_WRITE starts the
    write-out of a range without waiting for it or dropping it from the page cache (the scan reads it next).
    It makes nothing durable: the fdatasync at the end does, and has little left to do."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        function = ctypes.CDLL(name, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


_sync_file_range = _load_sync_file_range()


def _start_writeback(fd: int, start: int, length: int) -> None:
    if _sync_file_range is not None:
        _sync_file_range(fd, start, length, _SYNC_FILE_RANGE_WRITE)  # a failure only means a longer sync


def _close(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)


def _hash_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(READ_CHUNK):
            h.update(chunk)
    return h.hexdigest()
