"""The `local` connector: a directory inside the gateway's data directory (embedded use and tests).

A full key (`<tenant_id>/<base_path>/<key>`, see `connectors.paths.ObjectRoot`) is the file's path under
`<data>/storage`, so the tenant's id comes first and no base path can reach into another tenant's tree.
Each key segment is one path component (the key was checked by `connectors.paths` already); every path is
then resolved (symlinks followed) and must stay inside this connection's own root, `<storage>/<tenant_id>/
<base_path>/`: never merely inside the storage directory. Listing never follows or shows symlinks.
Directories are 0700 and files 0600. Writes go to a temporary file in the same directory and are renamed
into place once complete and fsynced, so a reader never sees half an object and a rerun replaces rather
than duplicates.
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
from connectors.paths import ObjectRoot
from connectors.private_files import FILE_MODE, private_dirs, private_root

# In `<storage>`: this directory holds objects as `<tenant_id>/<base_path>/<key>` (written when the
# directory is created, or by `filegate storage migrate-local` once it has moved the old layout).
LAYOUT_MARKER = ".layout-tenant-first"


def fresh_storage(storage: Path) -> None:
    """Create the storage directory (0700) with its layout marker, unless it exists already."""
    if storage.exists():
        private_root(storage)  # an install from before 0700: tightened
        return
    private_root(storage)
    (storage / LAYOUT_MARKER).touch(mode=FILE_MODE, exist_ok=True)


class LocalConnector:
    def __init__(self, storage: Path, root: ObjectRoot) -> None:
        self.storage = storage.resolve()
        self.root = root
        # This connection's own directory: whatever a key names must resolve inside it.
        self.directory = self.storage / root.prefix

    def _path(self, key: str, *, folder: bool = False) -> Path:
        if not key.startswith(self.root.prefix):
            raise InvalidKey("the key is not allowed: outside the connection's root")
        path = (self.storage / key).resolve()
        if not (self.directory in path.parents or (folder and path == self.directory)):
            raise InvalidKey("the key is not allowed: outside the connection's root")
        return path

    async def put(
        self, key: str, chunks: AsyncIterator[bytes], *, size: int, content_type: str | None
    ) -> ObjectInfo:
        path = self._path(key)
        tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.part"
        try:
            await asyncio.to_thread(fresh_storage, self.storage)
            await asyncio.to_thread(private_dirs, self.storage, path.parent)
            fd = await asyncio.to_thread(os.open, tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
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
        start = self._path(prefix[: prefix.rfind("/") + 1], folder=True)
        found: builtins.list[ObjectInfo] = []
        if not start.is_dir():
            return found
        # os.walk does not descend into linked directories; linked files are skipped here.
        for dirpath, dirnames, filenames in os.walk(start):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for name in filenames:
                if name.startswith("."):
                    continue  # partial writes
                path = Path(dirpath) / name
                if path.is_symlink():
                    continue
                key = path.relative_to(self.storage).as_posix()
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
            fresh_storage(self.storage)
            private_dirs(self.storage, self.directory)
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
