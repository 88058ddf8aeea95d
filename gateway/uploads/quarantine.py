"""The quarantine store: where bytes wait until they are scanned. One small interface, keys per tenant.

Keys are always `<tenant_id>/<upload_id>`, built here from UUIDs and never from client input, so no
stored file can escape its tenant's prefix. The local store keeps files 0600 in 0700 directories.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Protocol, runtime_checkable

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


def _prepare(path: Path) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)


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
