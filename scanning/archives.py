"""Archive limits: walk zip, tar and single-stream gzip/bzip2/xz uploads without ever extracting them.

Everything is read as a stream in `CHUNK` steps and every byte that comes out of a decompressor is counted
as it comes, so a limit stops the walk the moment it is crossed: headers are never trusted for sizes.
Nested archives are walked from a bounded spool (memory up to `SPOOL_IN_MEMORY`, then an anonymous temporary
file that the limits bound), never from an extracted tree.

What counts:
- members: every entry of every level (zip entries, tar headers);
- total size: the bytes read out of every member at every level, plus the payload of a compressed stream
  that is not a tar (a tar.gz counts its members once, not its payload twice); a nested archive therefore
  counts once as a member and again through its own members, as each level is real decompression work;
- ratio: per member (or per compressed stream), bytes out over compressed bytes actually read, and overall,
  total size over the size of the upload; ratios are judged once `RATIO_MIN_BYTES` have come out, so a tiny,
  highly compressible file (a blank sheet) is not refused;
- depth: the upload is level 0, an archive inside it level 1, and so on; a tar inside gzip/bzip2/xz is one
  level (tar.gz is one archive).
"""

from __future__ import annotations

import bz2
import contextlib
import copy
import gzip
import hashlib
import lzma
import struct
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from scanning.verdicts import Rejected

CHUNK = 64 * 1024
RATIO_MIN_BYTES = 1024 * 1024
SPOOL_IN_MEMORY = 1024 * 1024
TAR_HEADER_BUDGET = 1024 * 1024
# zipfile loads the whole central directory into memory before we can count entries: allow this much of it
# per member the limits still allow, which bounds the memory it takes.
ZIP_DIRECTORY_PER_MEMBER = 512
ZIP_DIRECTORY_MAX = 32 * 1024 * 1024
# The largest LZMA dictionary (xz -9) is 64 MiB; a stream asking for more is refused instead of allocated.
LZMA_MEMORY_MAX = 80 * 1024 * 1024
LZMA_DICTIONARY_MAX = 64 * 1024 * 1024
_SNIFF = 512
_ZIP_ENCRYPTED = 0x1


@dataclass(frozen=True)
class ArchiveLimits:
    """The tenant policy's `archive_limits`."""

    max_depth: int
    max_members: int
    max_total_size: int
    max_ratio: int


class _Readable(Protocol):
    def read(self, n: int, /) -> bytes: ...


class _Seekable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...
    def seek(self, offset: int, whence: int = 0, /) -> int: ...
    def tell(self) -> int: ...


class _Decompressor(Protocol):
    """What bz2.BZ2Decompressor and lzma.LZMADecompressor have in common."""

    @property
    def eof(self) -> bool: ...
    @property
    def needs_input(self) -> bool: ...
    @property
    def unused_data(self) -> bytes: ...
    def decompress(self, data: bytes, max_length: int = -1) -> bytes: ...


class _Stop(Exception):
    """Unwinds the walk with its verdict; caught by `inspect`, never seen outside this module."""

    def __init__(self, verdict: Rejected) -> None:
        super().__init__(verdict.detail)
        self.verdict = verdict


class _SourceError(Exception):
    """An I/O error of the upload or spool itself (not of the archive's contents): re-raised as it was."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


def _limits(detail: str) -> _Stop:
    return _Stop(Rejected("archive_limits", detail))


def _show(name: str) -> str:
    return repr(name if len(name) <= 80 else name[:77] + "...")


# The libraries' ways of saying "this archive is damaged".
_CORRUPT = (
    zipfile.BadZipFile,
    tarfile.TarError,
    gzip.BadGzipFile,
    lzma.LZMAError,
    zlib.error,
    EOFError,
    ValueError,
    struct.error,
    OSError,  # bz2 reports bad data as a bare OSError; real I/O errors arrive as _SourceError
)


class _Budget:
    def __init__(self, limits: ArchiveLimits, upload_size: int) -> None:
        self.limits = limits
        self.upload_size = max(upload_size, 1)
        self.members = 0
        self.total = 0

    def add_members(self, count: int) -> None:
        self.members += count
        if self.members > self.limits.max_members:
            raise _limits(f"archive has more than {self.limits.max_members} members")

    def produced(self, count: int) -> None:
        self.total += count
        if self.total > self.limits.max_total_size:
            raise _limits(f"archive expands to more than {self.limits.max_total_size} bytes")
        if self.total >= RATIO_MIN_BYTES and self.total > self.limits.max_ratio * self.upload_size:
            raise _limits(f"archive expands more than {self.limits.max_ratio}:1 overall")

    def check_ratio(self, produced: int, consumed: int, label: str) -> None:
        if produced >= RATIO_MIN_BYTES and produced > self.limits.max_ratio * max(consumed, 1):
            raise _limits(f"{label} expands more than {self.limits.max_ratio}:1")

    def directory_cap(self) -> int:
        left = max(self.limits.max_members - self.members, 0)
        # zipfile reads up to 64 KiB + 22 bytes to find the end record, whatever the member count.
        return min(max(128 * 1024, left * ZIP_DIRECTORY_PER_MEMBER), ZIP_DIRECTORY_MAX)


class _Source:
    """A seekable file that counts what is read from it and refuses reads larger than `max_read`."""

    def __init__(self, raw: _Seekable, *, max_read: int | None = None) -> None:
        self._raw = raw
        self._max_read = max_read
        self.count = 0

    def read(self, n: int = -1, /) -> bytes:
        if self._max_read is not None:
            wanted = n if n >= 0 else self._remaining()
            if wanted > self._max_read:
                # Only a zip's directory structures are read in one piece this large.
                raise _limits(f"zip directory of {wanted} bytes is over the {self._max_read}-byte bound")
        try:
            data = self._raw.read(n)
        except OSError as error:
            raise _SourceError(error) from error
        self.count += len(data)
        return data

    def seek(self, offset: int, whence: int = 0, /) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()

    def seekable(self) -> bool:
        return True

    def _remaining(self) -> int:
        here = self._raw.tell()
        end = self._raw.seek(0, 2)
        self._raw.seek(here)
        return end - here


class _Metered:
    """Counts what comes out of a member or a decompressor against the budget, as it comes."""

    def __init__(
        self,
        stream: _Readable,
        budget: _Budget,
        label: str,
        *,
        consumed: Callable[[], int] | None = None,
        count_total: bool = True,
        expected_crc: int | None = None,
    ) -> None:
        self._stream = stream
        self._budget = budget
        self._label = label
        self._consumed = consumed
        self.count_total = count_total
        self._expected_crc = expected_crc
        self._crc = 0
        self.produced = 0

    def read(self, n: int = CHUNK, /) -> bytes:
        data = self._stream.read(min(n, CHUNK) if n >= 0 else CHUNK)
        self.produced += len(data)
        if self._consumed is not None:
            self._budget.check_ratio(self.produced, self._consumed(), self._label)
        if self.count_total:
            self._budget.produced(len(data))
        if self._expected_crc is not None:
            self._crc = zlib.crc32(data, self._crc)
            if not data and self._crc != self._expected_crc:
                raise _Stop(Rejected("corrupt_archive", f"{self._label}: bad CRC"))
        return data


class _Prefixed:
    """`head` then the rest of `stream`: puts back the bytes read to sniff a format."""

    def __init__(self, head: bytes, stream: _Readable) -> None:
        self._head = head
        self._stream = stream

    def read(self, n: int = CHUNK, /) -> bytes:
        if self._head:
            n = len(self._head) if n < 0 else n
            data, self._head = self._head[:n], self._head[n:]
            return data
        return self._stream.read(n if n >= 0 else CHUNK)


class _Decoded:
    """A bzip2/xz/raw-LZMA stream decompressed in bounded steps (the decompressor's `max_length`).

    `again`: makes the decompressor for a further stream, when streams may follow one another (bzip2 and
    xz allow it); trailing bytes that do not start a valid stream are ignored, as the stdlib readers do.
    `ends_with_input`: the data may stop without an end marker (LZMA in zip).
    """

    def __init__(
        self,
        raw: _Readable,
        decompressor: _Decompressor,
        *,
        again: Callable[[], _Decompressor] | None = None,
        ends_with_input: bool = False,
    ) -> None:
        self._raw = raw
        self._decompressor = decompressor
        self._again = again
        self._ends_with_input = ends_with_input
        self._done = False
        self.consumed = 0

    def _next_raw(self) -> bytes:
        data = self._raw.read(CHUNK)
        self.consumed += len(data)
        return data

    def read(self, n: int = CHUNK, /) -> bytes:
        n = CHUNK if n < 0 else n
        while not self._done:
            if self._decompressor.eof:
                if self._again is None:
                    self._done = True
                    break
                rest = self._decompressor.unused_data or self._next_raw()
                if not rest:
                    self._done = True
                    break
                self._decompressor = self._again()
                try:
                    data = self._decompressor.decompress(rest, n)
                except (OSError, lzma.LZMAError):
                    self._done = True
                    break
            elif self._decompressor.needs_input:
                raw = self._next_raw()
                if not raw:
                    if self._ends_with_input:
                        self._done = True
                        break
                    raise EOFError("compressed stream ends before its end marker")
                data = self._decompressor.decompress(raw, n)
            else:
                data = self._decompressor.decompress(b"", n)
            if data:
                return data
        return b""


class _TarFeed:
    """What tarfile reads from: caps the bytes its header parsing may pull while `headers()` is active.

    tarfile reads a pax header, a GNU long name or sparse map whole, with a size the header declares; the
    cap keeps that bounded whatever the header says.
    """

    def __init__(self, stream: _Readable) -> None:
        self._stream = stream
        self._position = 0
        self._header_left: int | None = None

    @contextlib.contextmanager
    def headers(self) -> Iterator[None]:
        self._header_left = TAR_HEADER_BUDGET
        try:
            yield
        finally:
            self._header_left = None

    def open(self) -> tarfile.TarFile:
        """tarfile in stream mode over this feed (opening reads the first header)."""
        with self.headers():
            return tarfile.open(fileobj=self, mode="r|")

    def read(self, size: int, /) -> bytes:
        data = self._stream.read(size)
        if self._header_left is not None:
            self._header_left -= len(data)
            if self._header_left < 0:
                raise _limits(f"tar member headers larger than {TAR_HEADER_BUDGET} bytes")
        self._position += len(data)
        return data

    def write(self, data: bytes, /) -> int:
        raise OSError("read only")

    def tell(self) -> int:
        return self._position

    def seek(self, position: int, /) -> int:
        raise OSError("not seekable")

    def close(self) -> None:
        return None


def _read_head(stream: _Readable, size: int = _SNIFF) -> bytes:
    parts: list[bytes] = []
    got = 0
    while got < size:
        data = stream.read(size - got)
        if not data:
            break
        parts.append(data)
        got += len(data)
    return b"".join(parts)


def _sniff(head: bytes) -> str | None:
    """The archive format `head` starts with, by its magic bytes, or None."""
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08"):
        return "zip"
    if head[:3] == b"\x1f\x8b\x08":
        return "gzip"
    if head[:3] == b"BZh" and head[3:4].isdigit() and head[4:10] in (b"1AY&SY", b"\x17rE8P\x90"):
        return "bzip2"
    if head[:6] == b"\xfd7zXZ\x00":
        return "xz"
    if head[257:262] == b"ustar":
        return "tar"
    return None


def inspect(path: Path, limits: ArchiveLimits) -> Rejected | None:
    """Walk the archive at `path` within `limits`: None if it stays within them, else why not.

    Reasons: `archive_limits` (a limit crossed, or an archive that contains itself), `encrypted_archive`,
    `corrupt_archive`, `unsupported_archive` (a zip compression method that cannot be read). An I/O error
    of the file itself is raised, as it is not a verdict.
    """
    budget = _Budget(limits, path.stat().st_size)
    with path.open("rb") as upload:
        digest = hashlib.sha256()
        while chunk := upload.read(CHUNK):
            digest.update(chunk)
        upload.seek(0)
        kind = _sniff(upload.read(_SNIFF))
        upload.seek(0)
        if kind is None:
            # No magic at the start: a zip may still have data before it, and a v7 tar has no magic at all.
            kind = "zip" if zipfile.is_zipfile(upload) else "tar"
            upload.seek(0)
        try:
            _walk(kind, upload, 0, (digest.digest(),), budget, "")
        except _Stop as stop:
            return stop.verdict
        except _SourceError as failure:
            raise failure.error from None
    return None


def _walk(
    kind: str, source: _Seekable, depth: int, ancestors: tuple[bytes, ...], budget: _Budget, name: str
) -> None:
    where = _show(name) if name else "archive"
    try:
        if kind == "zip":
            _walk_zip(source, depth, ancestors, budget)
        elif kind == "tar":
            _walk_tar(_Source(source), depth, ancestors, budget)
        else:
            _walk_compressed(kind, source, depth, ancestors, budget, where)
    except (_Stop, _SourceError):
        raise
    except NotImplementedError as error:
        raise _Stop(Rejected("unsupported_archive", f"{where}: {error}")) from None
    except _CORRUPT as error:
        detail = str(error)[:200] or type(error).__name__
        raise _Stop(Rejected("corrupt_archive", f"{where}: {detail}")) from None


def _consume(stream: _Readable, name: str, depth: int, ancestors: tuple[bytes, ...], budget: _Budget) -> None:
    """Read a member to its end; if it is itself an archive, walk it one level down."""
    head = _read_head(stream)
    kind = _sniff(head)
    if kind is None:
        while stream.read(CHUNK):
            pass
        return
    if depth + 1 > budget.limits.max_depth:
        raise _limits(f"{_show(name)} is an archive nested deeper than {budget.limits.max_depth} levels")
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY, mode="w+b") as spool:
        digest = hashlib.sha256(head)
        try:
            spool.write(head)
            while chunk := stream.read(CHUNK):
                digest.update(chunk)
                spool.write(chunk)
            spool.seek(0)
        except OSError as error:
            raise _SourceError(error) from error
        if digest.digest() in ancestors:
            raise _limits(f"{_show(name)} is a copy of an archive that contains it (recursive archive)")
        _walk(kind, spool, depth + 1, (*ancestors, digest.digest()), budget, name)


def _walk_zip(source: _Seekable, depth: int, ancestors: tuple[bytes, ...], budget: _Budget) -> None:
    counted = _Source(source, max_read=budget.directory_cap())
    with zipfile.ZipFile(counted) as archive:
        members = archive.infolist()
        budget.add_members(len(members))
        for info in members:
            if info.flag_bits & _ZIP_ENCRYPTED:
                raise _Stop(Rejected("encrypted_archive", f"{_show(info.filename)} is encrypted"))
        for info in members:
            _walk_zip_member(archive, info, counted, depth, ancestors, budget)


def _walk_zip_member(
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    counted: _Source,
    depth: int,
    ancestors: tuple[bytes, ...],
    budget: _Budget,
) -> None:
    label = f"member {_show(info.filename)}"
    start = counted.count

    def consumed() -> int:
        return counted.count - start

    if info.compress_type in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        with archive.open(info) as member:
            _consume(
                _Metered(member, budget, label, consumed=consumed), info.filename, depth, ancestors, budget
            )
        return
    if info.compress_type not in (zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA):
        raise NotImplementedError(f"{label} uses compression method {info.compress_type}")
    # zipfile decompresses bzip2/LZMA members without an output bound (one read of 4 KiB of bzip2 can
    # expand to gigabytes), so read the compressed bytes as if stored and decompress them here, bounded.
    raw_info = copy.copy(info)
    raw_info.compress_type = zipfile.ZIP_STORED
    raw_info.file_size = info.compress_size
    del raw_info.CRC  # the CRC covers the decompressed bytes: checked below instead
    with archive.open(raw_info) as raw:
        if info.compress_type == zipfile.ZIP_BZIP2:
            decoded = _Decoded(raw, bz2.BZ2Decompressor())
        else:
            decoded = _Decoded(raw, _zip_lzma(raw), ends_with_input=True)
        metered = _Metered(decoded, budget, label, consumed=consumed, expected_crc=info.CRC)
        _consume(metered, info.filename, depth, ancestors, budget)


def _zip_lzma(raw: _Readable) -> lzma.LZMADecompressor:
    """The raw LZMA1 decompressor a zip LZMA member's 4-byte header and properties describe."""
    header = _read_head(raw, 4)
    if len(header) < 4:
        raise EOFError("truncated LZMA header")
    (size,) = struct.unpack("<H", header[2:4])
    properties = _read_head(raw, size)
    if size != 5 or len(properties) != 5:
        raise ValueError("bad LZMA properties")
    dictionary = struct.unpack("<I", properties[1:5])[0]
    if dictionary > LZMA_DICTIONARY_MAX:
        raise _limits(f"LZMA dictionary of {dictionary} bytes is over {LZMA_DICTIONARY_MAX}")
    lc, rest = properties[0] % 9, properties[0] // 9
    lp, pb = rest % 5, rest // 5
    lzma1 = {"id": lzma.FILTER_LZMA1, "dict_size": dictionary, "lc": lc, "lp": lp, "pb": pb}
    return lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=[lzma1])


def _xz() -> _Decompressor:
    return lzma.LZMADecompressor(lzma.FORMAT_XZ, memlimit=LZMA_MEMORY_MAX)


def _walk_compressed(
    kind: str, source: _Seekable, depth: int, ancestors: tuple[bytes, ...], budget: _Budget, where: str
) -> None:
    counted = _Source(source)

    def consumed() -> int:
        # Both readers below count the compressed bytes actually read from the source.
        return counted.count

    label = f"{kind} stream of {where}"
    try:
        with contextlib.ExitStack() as stack:
            payload: _Readable
            if kind == "gzip":
                payload = stack.enter_context(gzip.GzipFile(fileobj=counted, mode="rb"))
            else:
                again = bz2.BZ2Decompressor if kind == "bzip2" else _xz
                payload = _Decoded(counted, again(), again=again)
            _walk_payload(
                _Metered(payload, budget, label, consumed=consumed), kind, depth, ancestors, budget, where
            )
    except lzma.LZMAError as error:
        if "memory" in str(error).lower():
            raise _limits(f"{label} needs more than {LZMA_MEMORY_MAX} bytes to decompress") from None
        raise


def _walk_payload(
    metered: _Metered, kind: str, depth: int, ancestors: tuple[bytes, ...], budget: _Budget, where: str
) -> None:
    """A compressed stream's payload: a tar is walked at the same level, anything else is a member."""
    head = _read_head(metered)
    if _sniff(head) == "tar":
        # A tar's members are counted as they are read; counting its payload as well would count twice.
        metered.count_total = False
        _walk_tar(_Prefixed(head, metered), depth, ancestors, budget)
    else:
        _consume(_Prefixed(head, metered), f"{kind} payload of {where}", depth, ancestors, budget)


def _walk_tar(stream: _Readable, depth: int, ancestors: tuple[bytes, ...], budget: _Budget) -> None:
    feed = _TarFeed(stream)
    with feed.open() as archive:
        while True:
            with feed.headers():
                member = archive.next()
            if member is None:
                return
            budget.add_members(1)
            if member.isdir() or member.issym() or member.islnk() or member.isdev():
                continue
            extracted = archive.extractfile(member)
            if extracted is None:
                continue
            with extracted:
                metered = _Metered(extracted, budget, _show(member.name))
                _consume(metered, member.name, depth, ancestors, budget)


def zip_readable(path: Path) -> bool:
    """Whether a zip reader finds a member in the file at `path`, wherever in the file the zip sits.

    True also for a zip this module would refuse (encrypted, unsupported method, oversized directory):
    the question is only whether the bytes are a zip, e.g. appended to or hidden inside an image.
    """
    with path.open("rb") as upload:
        if not zipfile.is_zipfile(upload):
            return False
        upload.seek(0)
        try:
            with zipfile.ZipFile(_Source(upload, max_read=ZIP_DIRECTORY_MAX)) as archive:
                members = archive.infolist()
                if not members:
                    return False
                # Opening a member checks its local header: a chance end record in image data fails here.
                with archive.open(members[0]):
                    return True
        except _Stop:
            return True
        except (NotImplementedError, RuntimeError):
            return True
        except _CORRUPT:
            return False
        except _SourceError as failure:
            raise failure.error from None
