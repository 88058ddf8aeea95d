"""An asyncio client for clamd: PING, VERSION and INSTREAM scans over TCP or a unix socket.

Every scan answers a verdict value (`Clean`, `Infected` or `ScanError`); nothing is raised to say
"infected" or "scanner down". Each scan uses its own connection, and reads clamd's reply while it is
still sending: clamd answers early and closes the socket when a stream is over its `StreamMaxLength`,
and a client that only reads after writing everything loses that answer to a broken pipe.

Wire format (clamd's z-commands, null-terminated both ways): `zPING\\0` -> `PONG`, `zVERSION\\0` ->
`ClamAV 1.4.6/27830/Sat Nov 22 09:24:01 2025` (engine/database version/database date; engine only when
no official database is loaded), `zINSTREAM\\0` then frames of a 4-byte big-endian length and that
many bytes, ended by a zero length -> `stream: OK`, `stream: <signature> FOUND` or `... ERROR`.
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import socket
import struct
import time
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from scanning.verdicts import Clean, Infected, ScanError

__all__ = [
    "MAX_SCANNABLE_BYTES",
    "SCANNER",
    "ClamdClient",
    "ClamdError",
    "parse_database_version",
    "verdict_from_reply",
]

SCANNER = "clamav"

MAX_SCANNABLE_BYTES = 2**31 - 3
"""The largest input ClamAV scans: it clamps MaxFileSize to this (measured with 1.4.6, which logs
"scanning files greater than 2147483647 bytes (2 GiB - 1) is not supported" and sets the limit to
2147483645). Bigger inputs are refused without contacting clamd."""

MIN_SCAN_RATE = 5 * 1024 * 1024
"""The slowest rate, in bytes per second, at which a scan still counts as alive: its deadline is
`timeout + size / MIN_SCAN_RATE` (30 s + ~7 min for 2 GiB). clamd reads a stream at memory speed,
then scans it at 40-75 MiB/s (random bytes, one stream, 2 vCPUs), shared by its concurrent scans."""

VERSION_TTL = 60.0
"""Seconds a database version is reused: official databases change a few times a day, and asking on
every scan would cost a connection per scan."""

_REPLY_LIMIT = 64 * 1024  # clamd's replies are a line; anything longer is not clamd
_ANSWER_GRACE = 5.0  # after clamd broke the connection, how long its answer may still take to arrive
_END_OF_STREAM = struct.pack(">I", 0)
_FRAME = struct.Struct(">I")
# `ExtendedDetectionInfo yes` in clamd.conf appends "(<hash>:<size>)" to the signature name.
_FOUND = re.compile(r"\A(?P<name>.+?)(?:\([0-9a-fA-F]{32,64}:\d+\))? FOUND\Z")


class ClamdError(ConnectionError):
    """clamd could not be reached or gave no usable answer (raised by `version` only)."""


def parse_database_version(version: str) -> str | None:
    """The signature database version in a VERSION reply, e.g. `27830` from
    `ClamAV 1.4.6/27830/Sat Nov 22 09:24:01 2025`; None when clamd loaded no official database."""
    parts = version.strip().split("/")
    if len(parts) >= 2 and parts[1].strip().isdigit():
        return parts[1].strip()
    return None


def verdict_from_reply(reply: str, database_version: str | None = None) -> Clean | Infected | ScanError:
    """Map one INSTREAM reply of clamd to a verdict.

    Heuristic "detections" that only say clamd could not look (limits exceeded, encrypted content) are
    `ScanError`s, never `Infected` and never `Clean`; retrying cannot fix them, except clamd's
    MaxScanTime, which a less busy clamd may meet.
    """
    text = reply.strip("\0 \r\n")
    body = text.removeprefix("stream:").strip()
    if body == "OK":
        return Clean(scanner=SCANNER, database_version=database_version)
    found = _FOUND.match(body)
    if found is not None:
        name = found.group("name").strip()
        if name.startswith("Heuristics.Limits.Exceeded"):
            # MaxScanTime depends on how busy clamd is, so another try can finish; the size, recursion
            # and file-count limits give the same answer every time.
            retryable = name == "Heuristics.Limits.Exceeded.MaxScanTime"
            return ScanError("scan_limits_exceeded", f"clamd stopped at a limit: {name}", retryable=retryable)
        if name.startswith("Heuristics.Encrypted"):
            return ScanError("encrypted", f"encrypted content cannot be scanned: {name}", retryable=False)
        return Infected(signature=name, scanner=SCANNER, database_version=database_version)
    if text.endswith("ERROR"):
        if "size limit exceeded" in text:
            # clamd's StreamMaxLength: the same bytes will be over it next time too.
            return ScanError("stream_limit_exceeded", text, retryable=False)
        return ScanError("scanner_error", text, retryable=True)
    return ScanError("scanner_error", f"unexpected reply from clamd: {text[:200]!r}", retryable=True)


class _SourceError(Exception):
    """What the chunks being scanned raised, told apart from errors of the connection to clamd."""

    def __init__(self, original: Exception) -> None:
        super().__init__(str(original))
        self.original = original


class _Progress:
    __slots__ = ("sent",)

    def __init__(self) -> None:
        self.sent = 0


class _FileChunks:
    """The chunks of an open file, each read in a worker thread (local disk reads block)."""

    def __init__(self, f: io.FileIO, chunk_size: int) -> None:
        self._f = f
        self._chunk_size = chunk_size
        self._read: asyncio.Future[bytes] | None = None

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        self._read = asyncio.get_running_loop().run_in_executor(None, self._f.read, self._chunk_size)
        # Shielded: a thread cannot be cancelled, and `settle` must see when it really finished.
        data = await asyncio.shield(self._read)
        if not data:
            raise StopAsyncIteration
        return data

    async def settle(self) -> None:
        """Wait for a read still running in its thread, so the file is never closed under it."""
        if self._read is not None and not self._read.done():
            await asyncio.wait([self._read])
        if self._read is not None and not self._read.cancelled():
            self._read.exception()  # retrieved: an error of an abandoned read is not news


class ClamdClient:
    """A client for one clamd, addressed as `tcp://host:port` or `unix:///path/to/clamd.sock`.

    `timeout` bounds each command and is the fixed part of a scan's deadline (see `MIN_SCAN_RATE`);
    `connect_timeout` bounds opening a connection; `chunk_size` is the INSTREAM frame size for files.
    Safe to share between tasks: every call opens its own connection.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 30.0,
        chunk_size: int = 256 * 1024,
        connect_timeout: float = 5.0,
    ) -> None:
        parts = urlsplit(url)
        self._host: str | None = None
        self._port = 3310
        self._path: str | None = None
        if parts.scheme == "tcp":
            if not parts.hostname or parts.username or parts.password or parts.path not in ("", "/"):
                raise ValueError(f"clamd URL must be tcp://host:port, got {url!r}")
            self._host = parts.hostname
            self._port = parts.port or 3310  # .port raises ValueError for a bad port
        elif parts.scheme == "unix":
            if parts.netloc or not parts.path.startswith("/"):
                raise ValueError(f"clamd URL must be unix:///absolute/path, got {url!r}")
            self._path = parts.path
        else:
            raise ValueError(f"clamd URL must be tcp://host:port or unix:///path, got {url!r}")
        if parts.query or parts.fragment:
            raise ValueError(f"clamd URL takes no query or fragment, got {url!r}")
        if timeout <= 0 or connect_timeout <= 0:
            raise ValueError("timeouts must be positive")
        if not 0 < chunk_size <= 64 * 1024 * 1024:
            raise ValueError("chunk_size must be between 1 byte and 64 MiB")
        self.url = url
        self.timeout = timeout
        self.connect_timeout = min(connect_timeout, timeout)
        self.chunk_size = chunk_size
        self._version: tuple[float, str | None] | None = None  # (monotonic time, database version)

    def __repr__(self) -> str:
        return f"ClamdClient({self.url!r})"

    async def ping(self) -> bool:
        """True when clamd answers PONG within the timeout; False when it is down or says anything else."""
        try:
            return await self._command(b"PING") == "PONG"
        except (OSError, TimeoutError):
            return False

    async def version(self) -> str:
        """clamd's VERSION line, e.g. `ClamAV 1.4.6/27830/Sat Nov 22 09:24:01 2025`.

        Raises `ClamdError` when clamd cannot be reached or does not answer in time. Also refreshes the
        database version that scans report.
        """
        try:
            text = await self._command(b"VERSION")
        except (OSError, TimeoutError) as exc:
            raise ClamdError(f"clamd at {self.url}: {_describe(exc)}") from exc
        if not text.startswith("ClamAV"):
            raise ClamdError(f"clamd at {self.url} answered VERSION with {text[:200]!r}")
        # Without official databases (only our own signature files) VERSION carries no database number;
        # the engine version is then the best record of what scanned the file.
        self._version = (time.monotonic(), parse_database_version(text) or text.strip()[:64])
        return text

    async def database_version(self) -> str | None:
        """The signature database version (or, without official databases, clamd's engine version), asked
        at most every `VERSION_TTL` seconds. None when clamd cannot say; never raises."""
        cached = self._version
        if cached is not None and time.monotonic() - cached[0] < VERSION_TTL:
            return cached[1]
        try:
            await self.version()
        except ClamdError:
            return cached[1] if cached is not None else None
        return self._version[1] if self._version is not None else None

    async def scan_file(self, path: Path, *, size_hint: int | None = None) -> Clean | Infected | ScanError:
        """Scan a local file by streaming it to clamd (INSTREAM; clamd needs no access to the file).

        `size_hint` is the size the caller expects (e.g. the upload's declared size); the larger of it
        and the file's size sets the deadline and the 2 GiB check. A file that cannot be opened or read
        is `ScanError("source_unreadable", retryable=False)`.
        """
        try:
            f = await asyncio.to_thread(io.FileIO, path, "r")
        except OSError as exc:
            return ScanError("source_unreadable", f"{path}: {_describe(exc)}", retryable=False)
        try:
            size = max(os.fstat(f.fileno()).st_size, size_hint or 0)
            if size > MAX_SCANNABLE_BYTES:
                return _too_large(size)
            chunks = _FileChunks(f, self.chunk_size)
            try:
                return await self._instream(chunks, size)
            except OSError as exc:
                # Only reads of the file get here: errors of the connection become verdicts inside.
                return ScanError("source_unreadable", f"{path}: {_describe(exc)}", retryable=False)
            finally:
                await chunks.settle()
        finally:
            f.close()

    async def scan_stream(
        self, chunks: AsyncIterable[bytes], *, size_hint: int | None = None
    ) -> Clean | Infected | ScanError:
        """Scan bytes as they arrive, e.g. an object read from S3, each chunk sent as one frame.

        Without `size_hint` the deadline grows with the bytes sent. A stream found to be over
        `MAX_SCANNABLE_BYTES` is cut off and answers `too_large_to_scan`. When clamd answers early
        (over its StreamMaxLength) the rest of `chunks` is not read; closing it is the caller's business.
        Exceptions raised by `chunks` itself propagate after the connection is closed.
        """
        if size_hint is not None and size_hint > MAX_SCANNABLE_BYTES:
            return _too_large(size_hint)
        return await self._instream(chunks, size_hint)

    # -- the wire ---------------------------------------------------------------------------------------

    async def _connect(self) -> socket.socket:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self.connect_timeout):
            if self._path is not None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.setblocking(False)
                try:
                    await loop.sock_connect(sock, self._path)
                except BaseException:
                    sock.close()
                    raise
                return sock
            assert self._host is not None
            infos = await loop.getaddrinfo(self._host, self._port, type=socket.SOCK_STREAM)
            last: OSError = ConnectionRefusedError(f"no address for {self._host}")
            for family, type_, proto, _, address in infos:
                sock = socket.socket(family, type_, proto)
                sock.setblocking(False)
                # Without it the 4-byte end-of-stream frame can wait for a delayed ACK (40 ms a scan).
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                try:
                    await loop.sock_connect(sock, address)
                except OSError as exc:
                    sock.close()
                    last = exc
                    continue
                except BaseException:
                    sock.close()
                    raise
                return sock
            raise last

    async def _command(self, command: bytes) -> str:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self.timeout):
            sock = await self._connect()
            try:
                await loop.sock_sendall(sock, b"z" + command + b"\0")
                return await _read_reply(sock)
            finally:
                sock.close()

    async def _instream(self, chunks: AsyncIterable[bytes], size: int | None) -> Clean | Infected | ScanError:
        loop = asyncio.get_running_loop()
        started = loop.time()
        progress = _Progress()

        def deadline() -> float:
            return started + self.timeout + (size if size is not None else progress.sent) / MIN_SCAN_RATE

        tasks: list[asyncio.Task[Any]] = []
        cached = self._version
        version: asyncio.Task[str | None] | None = None
        if cached is None or time.monotonic() - cached[0] >= VERSION_TTL:
            # Asked on a second connection while the scan runs, so it adds no latency.
            version = asyncio.create_task(self.database_version())
            tasks.append(version)
        sock: socket.socket | None = None
        try:
            try:
                sock = await self._connect()
                await loop.sock_sendall(sock, b"zINSTREAM\0")
            except (OSError, TimeoutError) as exc:
                return self._unavailable(exc)
            # The reply is read while the frames are written: clamd answers early when the stream is
            # over its StreamMaxLength, then closes, and the answer must not be lost to the broken pipe.
            reply = asyncio.create_task(_read_reply(sock))
            writer = asyncio.create_task(self._send_frames(sock, chunks, progress))
            tasks += [reply, writer]
            waiting: set[asyncio.Task[Any]] = {reply, writer}
            while not reply.done():
                remaining = deadline() - loop.time()
                if remaining <= 0:
                    return self._unavailable(TimeoutError(f"no answer within {deadline() - started:.0f} s"))
                await asyncio.wait(waiting, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
                if writer not in waiting or not writer.done():
                    continue
                waiting.discard(writer)
                error = writer.exception()
                if error is None:
                    too_large = writer.result()
                    if too_large is not None:
                        return too_large
                elif isinstance(error, _SourceError):
                    raise error.original
                elif isinstance(error, OSError):
                    # clamd closed or reset the connection. If it answered first (size limit), the
                    # answer is in the socket buffer or on its way.
                    await asyncio.wait([reply], timeout=min(_ANSWER_GRACE, max(remaining, 0.1)))
                    if not reply.done():
                        return self._unavailable(error)
                else:
                    raise error
            try:
                text = reply.result()
            except OSError as exc:
                return self._unavailable(exc)
            verdict = verdict_from_reply(text)
            if isinstance(verdict, ScanError):
                return verdict
            database_version = await (version if version is not None else self.database_version())
            return replace(verdict, database_version=database_version)
        finally:
            for task in tasks:
                task.cancel()
            # Not suppress(): a cancellation of this scan itself must still propagate.
            await asyncio.gather(*tasks, return_exceptions=True)
            if sock is not None:
                sock.close()

    async def _send_frames(
        self, sock: socket.socket, chunks: AsyncIterable[bytes], progress: _Progress
    ) -> ScanError | None:
        loop = asyncio.get_running_loop()
        source = aiter(chunks)
        while True:
            try:
                chunk = await anext(source)
            except StopAsyncIteration:
                break
            except Exception as exc:
                raise _SourceError(exc) from exc
            if not chunk:
                continue  # a zero-length frame would end the stream
            if progress.sent + len(chunk) > MAX_SCANNABLE_BYTES:
                return _too_large(progress.sent + len(chunk))
            await loop.sock_sendall(sock, _FRAME.pack(len(chunk)))
            await loop.sock_sendall(sock, chunk)
            progress.sent += len(chunk)
        await loop.sock_sendall(sock, _END_OF_STREAM)
        return None

    def _unavailable(self, exc: BaseException) -> ScanError:
        return ScanError("scanner_unavailable", f"clamd at {self.url}: {_describe(exc)}", retryable=True)


async def _read_reply(sock: socket.socket) -> str:
    """Read one null-terminated reply. A reply cut off by the connection closing is returned as far as
    it came; no reply at all raises ConnectionError."""
    loop = asyncio.get_running_loop()
    buf = bytearray()
    while b"\0" not in buf:
        try:
            data = await loop.sock_recv(sock, 4096)
        except OSError:
            if buf:
                break
            raise
        if not data:
            if buf:
                break
            raise ConnectionResetError("clamd closed the connection without an answer")
        buf += data
        if len(buf) > _REPLY_LIMIT:
            raise ConnectionError("clamd's reply is too long")
    return bytes(buf).split(b"\0", 1)[0].decode("utf-8", "replace").strip()


def _too_large(size: int) -> ScanError:
    return ScanError(
        "too_large_to_scan",
        f"{size} bytes is over the {MAX_SCANNABLE_BYTES} bytes ClamAV can scan",
        retryable=False,
    )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError) and not str(exc):
        return "timed out"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
