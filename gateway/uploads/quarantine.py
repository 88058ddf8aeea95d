"""The quarantine store: where bytes wait until they are scanned. One small interface, keys per tenant.

Keys are always `<tenant_id>/<upload_id>`, built here from UUIDs and never from client input, so no
stored file can escape its tenant's prefix. The local store keeps files 0600 in 0700 directories; the S3
store (gateway/uploads/s3_quarantine.py) keeps objects `<prefix>/<tenant_id>/<upload_id>`.
`quarantine_store(settings)` is the one way to build the configured store.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from gateway.settings import Settings

WRITE_BUFFER = 1024 * 1024
READ_CHUNK = 1024 * 1024


class LimitExceeded(Exception):
    """More bytes arrived than allowed; what was written has been removed (or truncated back)."""


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
    ) -> tuple[int, str | None]:
        """Write `chunks` at `offset`, at most up to `limit` bytes in all; answers (bytes written, sha256 when
        offset is 0). `verify` runs after the last chunk and before anything is made durable: if it raises,
        the write is undone."""
        ...

    def read(self, key: str) -> AsyncIterator[bytes]: ...

    async def size(self, key: str) -> int: ...

    async def delete(self, key: str) -> None: ...

    async def sha256(self, key: str) -> str: ...

    async def seal(self, key: str) -> None:
        """All bytes of an upload written at offsets have arrived: make them one object (before hashing)."""
        ...


@runtime_checkable
class SupportsLocalPath(Protocol):
    """A store whose objects are files this process can open (libmagic and clamd read them directly)."""

    def local_path(self, key: str) -> Path: ...


class LocalQuarantine:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

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
    ) -> tuple[int, str | None]:
        path = self.local_path(key)
        await asyncio.to_thread(_prepare, path)
        hasher = hashlib.sha256() if offset == 0 else None
        fd = await asyncio.to_thread(os.open, path, os.O_WRONLY | os.O_CREAT, 0o600)
        written = 0
        try:
            await asyncio.to_thread(os.lseek, fd, offset, os.SEEK_SET)
            buffer = bytearray()
            async for chunk in chunks:
                written += len(chunk)
                if offset + written > limit:
                    raise LimitExceeded()
                if hasher is not None:
                    hasher.update(chunk)
                buffer += chunk
                if len(buffer) >= WRITE_BUFFER:
                    await asyncio.to_thread(_write_all, fd, bytes(buffer))
                    buffer.clear()
            if buffer:
                await asyncio.to_thread(_write_all, fd, bytes(buffer))
            if verify is not None:
                verify()
            await asyncio.to_thread(os.ftruncate, fd, offset + written)
            await asyncio.to_thread(os.fsync, fd)
        except BaseException:
            # Nothing half-written survives: a fresh file goes, an appended one returns to its offset.
            await asyncio.to_thread(_rollback, path, fd, offset)
            raise
        finally:
            await asyncio.to_thread(_close, fd)
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
        """A local file is written in place at every offset: it is one file already. Only an upload that
        never wrote a byte (tus `Upload-Length: 0`) gets its empty file here."""
        await asyncio.to_thread(_touch, self.local_path(key))


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
    await asyncio.to_thread(parent.mkdir, mode=0o700, parents=True, exist_ok=True)
    scratch = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="scan-", dir=parent))
    try:
        path = scratch / "content"
        fd = await asyncio.to_thread(os.open, path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            async for chunk in store.read(key):
                await asyncio.to_thread(_write_all, fd, chunk)
        finally:
            await asyncio.to_thread(_close, fd)
        yield path
    finally:
        await asyncio.to_thread(shutil.rmtree, scratch, True)


def _prepare(path: Path) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)


def _touch(path: Path) -> None:
    _prepare(path)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _rollback(path: Path, fd: int, offset: int) -> None:
    if offset == 0:
        path.unlink(missing_ok=True)
    else:
        os.ftruncate(fd, offset)


def _close(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)


def _hash_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(READ_CHUNK):
            h.update(chunk)
    return h.hexdigest()
