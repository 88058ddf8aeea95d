"""The `local` connector: a directory inside the gateway's data directory (embedded use and tests).

Full keys map to files under the directory; each key segment is one path component (the key was checked
by `connectors.paths` already, and the resolved path is checked again to stay under the directory).
Writes go to a temporary file in the same directory and are renamed into place once complete and
fsynced, so a reader never sees half an object and a rerun replaces rather than duplicates.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

from connectors.base import CHUNK, InvalidKey, ObjectInfo, ObjectNotFound, ObjectPage, Unavailable


class LocalConnector:
    def __init__(self, directory: Path) -> None:
        self.directory = directory.resolve()

    def _path(self, key: str) -> Path:
        path = (self.directory / key).resolve()
        if self.directory not in path.parents:
            raise InvalidKey("the key is not allowed: outside the directory")
        return path

    async def put(
        self, key: str, chunks: AsyncIterator[bytes], *, size: int, content_type: str | None
    ) -> ObjectInfo:
        path = self._path(key)
        tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.part"
        try:
            await asyncio.to_thread(path.parent.mkdir, mode=0o700, parents=True, exist_ok=True)
            fd = await asyncio.to_thread(os.open, tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError:
            raise Unavailable("the local directory cannot be written") from None
        written = 0
        try:
            try:
                async for chunk in chunks:
                    written += len(chunk)
                    await asyncio.to_thread(_write_all, fd, chunk)
                await asyncio.to_thread(os.fsync, fd)
            finally:
                await asyncio.to_thread(os.close, fd)
            await asyncio.to_thread(os.replace, tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                await asyncio.to_thread(tmp.unlink, True)
            raise
        return await self.stat(key)

    async def get(self, key: str) -> AsyncIterator[bytes]:
        path = self._path(key)
        try:
            fh = await asyncio.to_thread(open, path, "rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFound("no such object") from None
        try:
            while chunk := await asyncio.to_thread(fh.read, CHUNK):
                yield chunk
        finally:
            await asyncio.to_thread(fh.close)

    async def stat(self, key: str) -> ObjectInfo:
        path = self._path(key)
        try:
            st = await asyncio.to_thread(path.stat)
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFound("no such object") from None
        if not path.is_file():
            raise ObjectNotFound("no such object")
        return ObjectInfo(key, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC))

    async def list(self, prefix: str, *, cursor: str | None, limit: int) -> ObjectPage:
        items = await asyncio.to_thread(self._walk, prefix)
        if cursor is not None:
            items = [i for i in items if i.key > cursor]
        page = items[:limit]
        return ObjectPage(page, page[-1].key if len(items) > limit else None)

    def _walk(self, prefix: str) -> builtins.list[ObjectInfo]:
        # Walk only the deepest directory the prefix names; compare the rest of the prefix per key.
        folder = prefix.rpartition("/")[0]
        start = self._path(folder) if folder else self.directory
        found: builtins.list[ObjectInfo] = []
        if not start.is_dir():
            return found
        for dirpath, dirnames, filenames in os.walk(start):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for name in filenames:
                if name.startswith("."):
                    continue  # partial writes
                path = Path(dirpath) / name
                key = path.relative_to(self.directory).as_posix()
                if key.startswith(prefix):
                    st = path.stat()
                    found.append(ObjectInfo(key, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC)))
        found.sort(key=lambda i: i.key)
        return found

    async def delete(self, key: str) -> None:
        path = self._path(key)
        with contextlib.suppress(FileNotFoundError, IsADirectoryError, NotADirectoryError):
            await asyncio.to_thread(path.unlink)

    async def test(self) -> str:
        def probe() -> None:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            probe_file = self.directory / f".probe-{uuid.uuid4().hex}"
            probe_file.write_bytes(b"ok")
            probe_file.unlink()

        try:
            await asyncio.to_thread(probe)
        except OSError:
            raise Unavailable("the local directory cannot be written") from None
        return "the directory is writable"

    async def aclose(self) -> None:
        return None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
