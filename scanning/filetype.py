"""The type decision for an upload: what the bytes are (libmagic, then where libmagic is blind), and whether
the tenant's policy accepts them. ClamAV scanning comes after, elsewhere.

libmagic reads the start of a file and stops at the first match, so it cannot see a ZIP or HTML appended to
an image, a GIF that is also JavaScript, script inside an SVG, or an SVG behind a long comment. The checks
here read further, always in bounded chunks:

- polyglots: PNG, JPEG, GIF and WebP are walked to their logical end (IEND, the EOI after the last scan, the
  trailer, the RIFF size) and any data after it other than padding is refused; a PDF is refused when what
  follows its last %%EOF looks like another format; a raster image carrying `<script` or `<?php` anywhere, a
  GIF/BMP whose header opens a JavaScript comment, and a media file a zip reader opens are refused too;
- active content: an SVG (or a text file whose root element is `<svg>`) is parsed with expat, entities never
  declared nor expanded, and refused if it holds script, event handlers, `javascript:`/`data:text/html`
  URLs, foreignObject/iframe/embed/object, an ENTITY declaration, or is not well-formed;
- archives: zip, tar, gzip, bzip2, xz and zip-based documents are walked by `scanning.archives.inspect`;
- names: a file whose name ends in an extension that a browser, a shell or Windows runs (`.html`, `.js`,
  `.svg`, `.ps1`, `.exe`, `.sh`...) must BE that kind of file, judged on the detected type. Text released as
  `text/plain` but named `page.html` runs as HTML once saved and opened; the policy's
  `extension_mismatch_action` either rejects it (`extension_mismatch`) or has it renamed with an
  extension of what it really is (`page.html.txt`).
"""

from __future__ import annotations

import codecs
import re
import threading
import unicodedata
import xml.parsers.expat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

import magic

from scanning import archives
from scanning.verdicts import Rejected

DETECT_BYTES = 64 * 1024
CHUNK = 64 * 1024
SVG_MAX_BYTES = 16 * 1024 * 1024
XML_ROOT_BYTES = 1024 * 1024

_ARCHIVE_TYPES = frozenset(
    {
        "application/zip",
        "application/x-zip-compressed",
        "application/gzip",
        "application/x-gzip",
        "application/x-tar",
        "application/x-gtar",
        "application/x-bzip2",
        "application/x-xz",
        "application/java-archive",
        "application/epub+zip",
        "application/vnd.android.package-archive",
    }
)
# Office Open XML and OpenDocument files are zips.
_ARCHIVE_PREFIXES = ("application/vnd.openxmlformats-", "application/vnd.oasis.opendocument.")
# Types whose content a browser or a server may execute: declaring them as something else is dangerous.
_ACTIVE_FAMILIES = {
    "text/html": "html",
    "application/xhtml+xml": "html",
    "image/svg+xml": "svg",
    "text/javascript": "script",
    "application/javascript": "script",
    "application/x-javascript": "script",
    "application/ecmascript": "script",
    "text/ecmascript": "script",
    "text/x-php": "php",
    "application/x-php": "php",
    "application/x-httpd-php": "php",
    "application/x-executable": "executable",
    "application/x-pie-executable": "executable",
    "application/x-sharedlib": "executable",
    "application/x-dosexec": "executable",
    "application/x-msdownload": "executable",
    "application/vnd.microsoft.portable-executable": "executable",
    "application/x-mach-binary": "executable",
}
_MARKUP_CANDIDATES = frozenset({"application/xml", "image/svg+xml", "application/xhtml+xml"})
_HTML_ROOTS = frozenset({"html", "head", "body", "script", "iframe"})
_MEDIA_MAJORS = ("image/", "video/", "audio/")

# What trailing data or a damaged structure must not carry. The binary magics are only looked for where
# data is already out of place (after the logical end), where a chance match is negligible.
_FOREIGN = re.compile(
    rb"PK\x03\x04|PK\x05\x06|PK\x01\x02|\x7fELF|%PDF-|Rar!\x1a\x07|7z\xbc\xaf\x27\x1c"
    rb"|(?i:<html|<script|<\?php|<svg|<!doctype|<iframe|<body|<object|<embed|javascript:)"
)
_FOREIGN_NAMES = (
    (b"pk\x03\x04", "ZIP"),
    (b"pk\x05\x06", "ZIP"),
    (b"pk\x01\x02", "ZIP"),
    (b"\x7felf", "ELF executable"),
    (b"%pdf-", "PDF"),
    (b"rar!", "RAR"),
    (b"7z", "7-Zip"),
    (b"<?php", "PHP"),
    (b"<script", "script"),
    (b"javascript:", "script"),
    (b"<svg", "SVG"),
)
_FOREIGN_OVERLAP = 16
# Inside a raster image these only appear by intent (a webshell in EXIF, XSS in a comment): five or more
# fixed bytes plus a delimiter make a chance match in compressed data negligible.
_IMAGE_BODY_MARKERS = re.compile(rb"(?i:<script[\s>/]|<\?php\s)")
# Real images have at most thousands of chunks, segments or blocks. Past this many the walk stops and what
# remains is searched for other formats' signatures instead, which is fast whatever the structure.
_MAX_STRUCTURES = 100_000
_MAX_PICTURES = 64
_PADDING = b"\x00\xff \t\r\n"
# In entropy-coded JPEG data a marker is a 0xFF followed by neither a stuffed 0x00, a restart marker, nor fill.
_JPEG_MARKER = re.compile(rb"\xff(?=[^\x00\xd0-\xd7\xff])")
_GIF_JS = re.compile(rb"^(?:GIF8[79]a|BM)[\s=;,]*(?:/\*|//)")
_ELEMENT_NAME = re.compile(r"<(?:[A-Za-z_][\w.\-]*:)?([A-Za-z_][\w.\-]*)")
_ACTIVE_ELEMENTS = frozenset(
    {
        "script",
        "foreignobject",
        "iframe",
        "embed",
        "object",
        "applet",
        "frame",
        "frameset",
        "handler",
        "listener",
    }
)
_XINCLUDE = "http://www.w3.org/2001/XInclude"
# Extensions that run when the file is opened (a browser, a shell, Windows Script Host, the Windows shell,
# a web server), each with the detected types that really are that kind of file. A name ending in one of
# these on content of any other type is a mismatch; an empty set means no scanned upload may carry it.
_HTML = frozenset({"text/html", "application/xhtml+xml"})
_JS = frozenset(
    {"text/javascript", "application/javascript", "application/x-javascript", "application/ecmascript"}
)
_PE = frozenset(
    {"application/x-dosexec", "application/vnd.microsoft.portable-executable", "application/x-msdownload"}
)
_SHELL = frozenset({"text/x-shellscript", "application/x-sh", "application/x-shellscript"})
_PHP = frozenset({"text/x-php", "application/x-php", "application/x-httpd-php"})
_NOTHING: frozenset[str] = frozenset()
_ACTIVE_EXTENSIONS: dict[str, frozenset[str]] = {
    **dict.fromkeys(("html", "htm", "xhtml", "xht", "shtml", "shtm"), _HTML),
    **dict.fromkeys(("mht", "mhtml"), frozenset({"message/rfc822", "multipart/related"})),
    **dict.fromkeys(("svg", "svgz"), frozenset({"image/svg+xml"})),
    **dict.fromkeys(("xml", "xsl", "xslt"), frozenset({"text/xml", "application/xml", "application/xslt+xml"})),
    **dict.fromkeys(("js", "mjs", "cjs", "jsx"), _JS),
    **dict.fromkeys(("exe", "com", "scr", "dll", "cpl", "ocx", "sys", "drv", "efi", "pif"), _PE),
    **dict.fromkeys(("msi", "msp", "mst"), frozenset({"application/x-msi", "application/x-ole-storage"})),
    **dict.fromkeys(("bat", "cmd"), frozenset({"text/x-msdos-batch"})),
    **dict.fromkeys(("sh", "bash", "zsh", "ksh", "csh", "command"), _SHELL),
    **dict.fromkeys(("php", "php3", "php4", "php5", "php7", "php8", "phtml", "pht", "phar"), _PHP),
    **dict.fromkeys(("py", "pyw"), frozenset({"text/x-script.python", "text/x-python"})),
    "pl": frozenset({"text/x-perl"}),
    "rb": frozenset({"text/x-ruby"}),
    "jar": frozenset({"application/java-archive"}),
    "apk": frozenset({"application/vnd.android.package-archive"}),
    "lnk": frozenset({"application/x-ms-shortcut"}),
    "chm": frozenset({"application/vnd.ms-htmlhelp"}),
    "swf": frozenset({"application/x-shockwave-flash"}),
    "desktop": frozenset({"application/x-desktop"}),
    # Scripts and shell files libmagic cannot tell from plain text: never on a scanned upload.
    **dict.fromkeys(
        (
            "ps1", "psm1", "psd1", "ps1xml", "psc1", "vbs", "vbe", "vb", "jse", "wsf", "wsh", "wsc", "ws",
            "sct", "hta", "reg", "inf", "scf", "url", "website", "application", "appref-ms", "gadget", "msc",
            "jnlp", "iqy", "slk", "settingcontent-ms", "library-ms", "search-ms", "asp", "aspx", "ashx",
            "asmx", "jsp", "jspx", "cfm", "cgi", "appimage", "run",
        ),
        _NOTHING,
    ),
}  # fmt: skip
# The extension a renamed file gets: what its detected type really is (never one of the above but SVG,
# which has passed the active-content check by then), else text or opaque bytes.
_SAFE_EXTENSIONS = {
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/gif": "gif",
    "image/webp": "webp",
    "image/bmp": "bmp",
    "image/tiff": "tif",
    "image/avif": "avif",
    "image/heic": "heic",
    "image/svg+xml": "svg",
    "video/mp4": "mp4",
    "video/webm": "webm",
    "video/quicktime": "mov",
    "audio/mpeg": "mp3",
    "audio/ogg": "ogg",
    "application/pdf": "pdf",
    "application/zip": "zip",
    "application/gzip": "gz",
}
SAFE_EXTENSION_MAX = max(len(e) for e in (*_SAFE_EXTENSIONS.values(), "txt", "bin"))
_DANGEROUS_URLS = ("javascript:", "vbscript:", "data:text/html", "data:application/xhtml", "data:text/xml")
_DANGEROUS_SVG_URL = "data:image/svg+xml"


def mime_matches(mime: str, patterns: Sequence[str]) -> bool:
    """Whether `mime` matches any policy pattern (`type/subtype`, `type/*`, `*/*`), ignoring case and parameters."""
    essence = _essence(mime)
    major = essence.split("/", 1)[0] + "/"
    for pattern in patterns:
        wanted = _essence(pattern)
        if wanted in ("*/*", essence) or (wanted.endswith("/*") and wanted[:-1] == major and "/" in essence):
            return True
    return False


_local = threading.local()


def _magic() -> magic.Magic:
    # python-magic objects are not thread safe: one per thread (calls come through asyncio.to_thread).
    instance = getattr(_local, "magic", None)
    if instance is None:
        instance = magic.Magic(mime=True)
        _local.magic = instance
    return instance


def detect(path: Path) -> str:
    """The libmagic MIME type of the file's first 64 KiB."""
    with path.open("rb") as upload:
        head = upload.read(DETECT_BYTES)
    return _essence(str(_magic().from_buffer(head)))


@dataclass(frozen=True)
class TypePolicy:
    """The type part of a tenant policy: allowed type patterns, `archive_limits`, and what a name whose
    active extension the content does not bear out gets (`extension_mismatch_action`)."""

    allowed_types: tuple[str, ...]
    max_depth: int
    max_members: int
    max_total_size: int
    max_ratio: int
    extension_mismatch: Literal["reject", "rename"] = "rename"


@dataclass(frozen=True)
class TypeCheck:
    """What the file is, and the refusal if it fails the type checks (None: on to the virus scan).

    `rename_extension`: the name ends in an active extension its content does not bear out, and the policy
    says to rename: append this extension to the name (the caller owns names and their limits)."""

    detected_type: str
    decision: Rejected | None
    rename_extension: str | None = None


def check_file(path: Path, *, declared_type: str | None, filename: str, policy: TypePolicy) -> TypeCheck:
    """The whole type decision for the upload at `path`; the content decides, never the declared type or name.

    Order: detect; a text file whose root element is `<svg>` (or `<html>`) counts as that type; the policy on
    the detected type (`type_not_allowed`); a dangerous contradiction of the declared type
    (`type_mismatch`); polyglots (`polyglot`); SVG active content (`active_content`); archive limits
    (`archive_limits`, `encrypted_archive`, `corrupt_archive`, `unsupported_archive`); last, the name's
    extension against the detected type (`extension_mismatch`, or a rename, as the policy says). The name
    never makes content acceptable: it can only be refused or renamed.
    """
    detected = detect(path)
    if detected.startswith("text/") or detected in _MARKUP_CANDIDATES:
        root = _root_element(path)
        if root == "svg":
            detected = "image/svg+xml"
        elif root in _HTML_ROOTS and detected == "text/plain":
            detected = "text/html"

    def refuse(reason: str, detail: str) -> TypeCheck:
        return TypeCheck(detected, Rejected(reason, detail))

    if not mime_matches(detected, policy.allowed_types):
        return refuse("type_not_allowed", f"{detected} is not an allowed type")
    mismatch = _mismatch(declared_type, detected)
    if mismatch is not None:
        return refuse("type_mismatch", mismatch)
    # Media, PDF and text are never zips: for them a zip inside is a disguise. Other types that a zip reader
    # opens (self-extracting executables, zip-based formats libmagic names otherwise) are walked as archives.
    disguisable = detected != "image/svg+xml" and (
        detected.startswith((*_MEDIA_MAJORS, "text/")) or detected == "application/pdf"
    )
    if disguisable:
        polyglot = _polyglot(path, detected)
        if polyglot is not None:
            return refuse("polyglot", polyglot)
    if detected == "image/svg+xml":
        active = _svg_active_content(path)
        if active is not None:
            return refuse("active_content", active)
    if _is_archive_type(detected) or (not disguisable and archives.zip_readable(path)):
        limits = archives.ArchiveLimits(
            max_depth=policy.max_depth,
            max_members=policy.max_members,
            max_total_size=policy.max_total_size,
            max_ratio=policy.max_ratio,
        )
        verdict = archives.inspect(path, limits)
        if verdict is not None:
            return TypeCheck(detected, verdict)
    extension = extension_mismatch(filename, detected)
    if extension is not None:
        if policy.extension_mismatch == "reject":
            return refuse("extension_mismatch", f"a .{extension} name on {detected} content")
        return TypeCheck(detected, None, rename_extension=safe_extension(detected))
    return TypeCheck(detected, None)


def extension_mismatch(filename: str, detected: str) -> str | None:
    """The name's extension (lower case) if it is one that runs when opened and the content is not of that
    kind; None when the name is harmless or borne out by the content."""
    stem, dot, extension = filename.rpartition(".")
    if not dot or not stem:
        return None
    extension = unicodedata.normalize("NFKC", extension).lower()
    kinds = _ACTIVE_EXTENSIONS.get(extension)
    if kinds is None or _essence(detected) in kinds:
        return None
    return extension


def safe_extension(detected: str) -> str:
    """An extension that opens `detected` content as what it is, and never runs it."""
    essence = _essence(detected)
    if essence in _SAFE_EXTENSIONS:
        return _SAFE_EXTENSIONS[essence]
    return "txt" if essence.startswith("text/") else "bin"


def _essence(mime: str) -> str:
    return mime.split(";", 1)[0].strip().lower()


def _is_archive_type(mime: str) -> bool:
    return mime in _ARCHIVE_TYPES or mime.startswith(_ARCHIVE_PREFIXES)


def _mismatch(declared_type: str | None, detected: str) -> str | None:
    """Why the declared type dangerously contradicts the detected one, or None."""
    if declared_type is None:
        return None
    declared = _essence(declared_type)
    if declared in ("", "application/octet-stream", detected):
        return None
    if declared.startswith("image/"):
        if not detected.startswith("image/"):
            return f"declared {declared} but the content is {detected}"
        if detected == "image/svg+xml" and declared != "image/svg+xml":
            return f"declared {declared} but the content is an SVG document, which can carry script"
        return None
    family = _ACTIVE_FAMILIES.get(detected)
    if family is not None and _ACTIVE_FAMILIES.get(declared) != family:
        return f"declared {declared} but the content is {detected}"
    return None


# --- Polyglots ------------------------------------------------------------------------------------------


class _Bytes:
    """A forward reader over a file with a small buffer: bytes, skips, and the JPEG marker search."""

    def __init__(self, upload: BinaryIO, start: int, size: int) -> None:
        self._file = upload
        self._file.seek(start)
        self._buffer = b""
        self._index = 0
        self._base = start
        self.size = size

    @property
    def position(self) -> int:
        return self._base + self._index

    def _fill(self, wanted: int) -> bool:
        if len(self._buffer) - self._index >= wanted:
            return True
        self._base += self._index
        self._buffer = self._buffer[self._index :] + self._file.read(max(CHUNK, wanted))
        self._index = 0
        return len(self._buffer) >= wanted

    def take(self, count: int) -> bytes | None:
        if not self._fill(count):
            return None
        data = self._buffer[self._index : self._index + count]
        self._index += count
        return data

    def byte(self) -> int | None:
        data = self.take(1)
        return data[0] if data is not None else None

    def skip(self, count: int) -> bool:
        """Move `count` bytes on; False (and stay put) if that passes the end of the file."""
        target = self.position + count
        if target > self.size:
            return False
        if self._index + count <= len(self._buffer):
            self._index += count
        else:
            self._file.seek(target)
            self._buffer, self._index, self._base = b"", 0, target
        return True

    def next_jpeg_marker(self) -> bool:
        """Move to the next 0xFF that starts a marker in entropy-coded data (not stuffing, not RSTn)."""
        while True:
            match = _JPEG_MARKER.search(self._buffer, self._index)
            if match is not None:
                self._index = match.start()
                return True
            # A 0xFF at the very end may start a marker whose second byte is in the next chunk.
            keep = 1 if self._buffer.endswith(b"\xff") else 0
            self._index = len(self._buffer) - keep
            if not self._fill(keep + 1):
                return False

    def skip_sub_blocks(self) -> bool:
        """Skip GIF data sub-blocks through their terminator; False if the file ends first."""
        while True:
            if not self._fill(1):
                return False
            # A tight loop over the buffer: a GIF can be made of millions of one-byte sub-blocks.
            buffer, index, end = self._buffer, self._index, len(self._buffer)
            while index < end:
                size = buffer[index]
                if size == 0:
                    self._index = index + 1
                    return True
                index += size + 1
            self._index = end
            if not self.skip(index - end):
                return False


def _png_end(reader: _Bytes) -> tuple[int | None, int]:
    """(offset just past IEND, or None if the chunk structure breaks first; last offset that was sound)."""
    if not reader.skip(8):
        return None, 0
    for _ in range(_MAX_STRUCTURES):
        sound = reader.position
        header = reader.take(8)
        if header is None:
            return None, sound
        length = int.from_bytes(header[:4], "big")
        kind = header[4:]
        if length > 0x7FFFFFFF or not kind.isalpha() or not reader.skip(length + 4):
            return None, sound
        if kind == b"IEND":
            return reader.position, reader.position
    return None, reader.position


def _jpeg_end(reader: _Bytes) -> tuple[int | None, int]:
    """(offset just past the EOI that ends this JPEG, or None; last offset that was sound).

    EOI bytes can occur inside entropy-coded data, so segments are walked and scans are searched for real
    markers (0xFF not followed by a stuffed 0x00 or a restart marker), as a decoder does.
    """
    if reader.take(2) != b"\xff\xd8":
        return None, reader.position
    for _ in range(_MAX_STRUCTURES):
        sound = reader.position
        # Fill bytes, stray bytes, stuffed 0xFF00 and restart markers are passed over, as a decoder does;
        # right after a start of scan this is the walk through the entropy-coded data.
        marker = reader.take(2) if reader.next_jpeg_marker() else None
        if marker is None:
            return None, sound
        if marker[1] == 0xD9:
            return reader.position, reader.position
        if marker[1] == 0x01:
            continue
        length = reader.take(2)
        if length is None or int.from_bytes(length, "big") < 2:
            return None, sound
        if not reader.skip(int.from_bytes(length, "big") - 2):
            return None, sound
    return None, reader.position


def _gif_end(reader: _Bytes) -> tuple[int | None, int]:
    """(offset just past the trailer, or None if the block structure breaks; last offset that was sound).

    A GIF that stops cleanly where the next block would start, without a trailer, is common and harmless.
    """
    header = reader.take(13)
    if header is None:
        return None, 0

    def palette(flags: int) -> int:
        return 3 * 2 ** ((flags & 7) + 1) if flags & 0x80 else 0

    if not reader.skip(palette(header[10])):
        return None, 13
    for _ in range(_MAX_STRUCTURES):
        sound = reader.position
        introducer = reader.byte()
        if introducer is None:
            return sound, sound
        if introducer == 0x3B:
            return reader.position, reader.position
        if introducer == 0x21:
            if reader.byte() is None or not reader.skip_sub_blocks():
                return None, sound
        elif introducer == 0x2C:
            descriptor = reader.take(9)
            if (
                descriptor is None
                or not reader.skip(palette(descriptor[8]) + 1)
                or not reader.skip_sub_blocks()
            ):
                return None, sound
        else:
            return None, sound
    return None, reader.position


def _webp_end(reader: _Bytes) -> tuple[int | None, int]:
    header = reader.take(12)
    if header is None or header[:4] != b"RIFF":
        return None, 0
    size = int.from_bytes(header[4:8], "little")
    end = 8 + size + (size & 1)
    return (end, end) if end <= reader.size else (None, 12)


_WALKERS = {"image/png": _png_end, "image/jpeg": _jpeg_end, "image/gif": _gif_end, "image/webp": _webp_end}
_FORMAT_NAMES = {"image/png": "PNG", "image/jpeg": "JPEG", "image/gif": "GIF", "image/webp": "WebP"}


def _foreign(upload: BinaryIO, start: int, end: int | None = None) -> str | None:
    """The name of another format whose signature appears in [start, end), or None."""
    upload.seek(start)
    carried = b""
    position = start
    while end is None or position < end:
        chunk = upload.read(CHUNK if end is None else min(CHUNK, end - position))
        if not chunk:
            return None
        position += len(chunk)
        window = carried + chunk
        match = _FOREIGN.search(window)
        if match is not None:
            found = match.group().lower()
            return next((name for prefix, name in _FOREIGN_NAMES if found.startswith(prefix)), "HTML")
        carried = window[-_FOREIGN_OVERLAP:]
    return None


def _only_padding(upload: BinaryIO, start: int) -> bool:
    upload.seek(start)
    while chunk := upload.read(CHUNK):
        if chunk.translate(None, _PADDING):
            return False
    return True


def _search(upload: BinaryIO, pattern: re.Pattern[bytes]) -> bytes | None:
    upload.seek(0)
    carried = b""
    while chunk := upload.read(CHUNK):
        window = carried + chunk
        match = pattern.search(window)
        if match is not None:
            return match.group()
        carried = window[-_FOREIGN_OVERLAP:]
    return None


def _last_eof_marker(upload: BinaryIO, size: int) -> int | None:
    """Offset just past the last `%%EOF` (and its end of line), searching back from the end."""
    end = size
    carried = b""
    while end > 0:
        start = max(0, end - CHUNK)
        upload.seek(start)
        window = upload.read(end - start) + carried
        found = window.rfind(b"%%EOF")
        if found >= 0:
            after = start + found + 5
            upload.seek(after)
            tail = upload.read(2)
            return after + (2 if tail == b"\r\n" else 1 if tail[:1] in (b"\r", b"\n") else 0)
        carried = window[:4]
        end = start
    return None


def _polyglot(path: Path, detected: str) -> str | None:
    """Why the media, PDF or text file at `path` is also something else, or None."""
    size = path.stat().st_size
    with path.open("rb") as upload:
        if detected.startswith("image/") and _GIF_JS.match(upload.read(16)):
            return "the image header opens a JavaScript comment (GIF/JavaScript polyglot)"
        walker = _WALKERS.get(detected)
        if walker is not None:
            name = _FORMAT_NAMES[detected]
            end, sound = walker(_Bytes(upload, 0, size))
            if detected == "image/jpeg":
                # Multi-picture JPEGs (MPF, gain maps) store a few more JPEGs after the first EOI.
                for _ in range(_MAX_PICTURES):
                    if end is None or end >= size:
                        break
                    upload.seek(end)
                    if upload.read(3) != b"\xff\xd8\xff":
                        break
                    end, sound = walker(_Bytes(upload, end, size))
            if end is None:
                found = _foreign(upload, sound)
                if found is not None:
                    return f"the {name} structure breaks at byte {sound} and what follows contains {found}"
            elif end < size and not _only_padding(upload, end):
                found = _foreign(upload, end)
                what = f" (contains {found})" if found is not None else ""
                return f"{size - end} bytes follow the end of the {name} at byte {end}{what}"
        if detected.startswith("image/"):
            marker = _search(upload, _IMAGE_BODY_MARKERS)
            if marker is not None:
                shown = marker.decode("ascii", "replace").strip()
                return f"the image carries {shown!r} markup"
        if detected == "application/pdf":
            end = _last_eof_marker(upload, size)
            if end is not None and end < size and not _only_padding(upload, end):
                found = _foreign(upload, end)
                if found is not None:
                    return f"{found} follows the final %%EOF of the PDF at byte {end}"
    if archives.zip_readable(path):
        return f"the {detected} file is also a readable ZIP archive"
    return None


# --- SVG and markup -------------------------------------------------------------------------------------


class _Text:
    """The decoded text of a file, read forward in chunks; holds only what is not yet consumed."""

    def __init__(self, upload: BinaryIO, encoding: str) -> None:
        self._file = upload
        self._decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
        self.buffer = ""
        self.eof = False

    def fill(self, wanted: int) -> bool:
        while len(self.buffer) < wanted and not self.eof:
            raw = self._file.read(CHUNK)
            self.buffer += self._decoder.decode(raw, final=not raw)
            self.eof = not raw
        return len(self.buffer) >= wanted

    def skip_past(self, token: str) -> bool:
        while True:
            found = self.buffer.find(token)
            if found >= 0:
                self.buffer = self.buffer[found + len(token) :]
                return True
            # Keep only what could be the start of a token cut by the chunk boundary.
            keep = len(token) - 1
            self.buffer = self.buffer[len(self.buffer) - keep :] if keep else ""
            if self.eof:
                return False
            self.fill(len(self.buffer) + 1)


def _encoding(head: bytes) -> str:
    if head.startswith(b"\xef\xbb\xbf"):
        return "utf-8-sig"
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16"
    if head.startswith(b"<\x00"):
        return "utf-16-le"
    if head.startswith(b"\x00<"):
        return "utf-16-be"
    return "utf-8"


def _root_element(path: Path) -> str | None:
    """The lower-cased local name of the root element, or None if the text does not start as markup.

    expat first, over a bounded start (it holds a whole comment or tag in memory), as it reads quoted
    literals and internal subsets right; then a tolerant streaming skip for what XML refuses but browsers
    accept (`--` inside comments, stray text) or for a prolog longer than that start.
    """
    root = _xml_root(path)
    return root if root is not None else _tolerant_root(path)


class _Found(Exception):
    """Stops a parse once the answer is known."""


def _xml_root(path: Path) -> str | None:
    parser = xml.parsers.expat.ParserCreate(namespace_separator=" ")
    doctype: list[str] = []

    def start(name: str, _: object) -> None:
        raise _Found(name.rpartition(" ")[2])

    def declared(name: str, *_: object) -> None:
        doctype.append(name.rpartition(":")[2])

    def entity(*_: object) -> None:
        # Never expand entities to find the root: the DOCTYPE names it.
        raise _Found(doctype[0] if doctype else "")

    parser.StartElementHandler = start
    parser.StartDoctypeDeclHandler = declared
    parser.EntityDeclHandler = entity
    try:
        with path.open("rb") as upload:
            for _ in range(XML_ROOT_BYTES // CHUNK):
                chunk = upload.read(CHUNK)
                parser.Parse(chunk, not chunk)
                if not chunk:
                    break
    except _Found as found:
        return str(found).lower() or None
    except (xml.parsers.expat.ExpatError, LookupError):
        # LookupError: an encoding declaration no codec knows.
        return None
    return None


def _tolerant_root(path: Path) -> str | None:
    """The first element after whitespace, processing instructions, comments and a DOCTYPE, streamed in
    bounded memory however long they run."""
    with path.open("rb") as upload:
        text = _Text(upload, _encoding(upload.read(4)))
        upload.seek(0)
        while True:
            text.fill(256)
            text.buffer = text.buffer.lstrip(" \t\r\n\ufeff")
            if not text.buffer:
                if text.eof:
                    return None
                continue
            if text.buffer.startswith("<?"):
                if not text.skip_past("?>"):
                    return None
            elif text.buffer.startswith("<!--"):
                if not text.skip_past("-->"):
                    return None
            elif text.buffer[:9].upper() == "<!DOCTYPE":
                if not _skip_doctype(text):
                    return None
            else:
                match = _ELEMENT_NAME.match(text.buffer)
                return match.group(1).lower() if match is not None else None


def _skip_doctype(text: _Text) -> bool:
    text.buffer = text.buffer[9:]
    while True:
        ends = [at for at in (text.buffer.find("["), text.buffer.find(">")) if at >= 0]
        if ends:
            break
        text.buffer = ""
        if text.eof:
            return False
        text.fill(1)
    at = min(ends)
    subset = text.buffer[at] == "["
    text.buffer = text.buffer[at + 1 :]
    return not subset or (text.skip_past("]") and text.skip_past(">"))


class _ActiveContent(Exception):
    """Stops the SVG parse at the first finding."""


def _check_attributes(element: str, attributes: dict[str, str]) -> None:
    for name, value in attributes.items():
        local = name.rsplit(" ", 1)[-1].lower()
        if local.startswith("on") and len(local) > 2:
            raise _ActiveContent(f"event handler attribute {local!r} on <{element}>")
        if local == "attributename" and value.strip().lower().startswith("on"):
            # <set attributeName="onclick" to="..."> animates an event handler into existence.
            raise _ActiveContent(f"animation of event handler {value.strip()!r}")
        # Browsers drop whitespace and control characters inside a URL scheme ("java\tscript:").
        squeezed = "".join(character for character in value if character > " ").lower()
        for url in _DANGEROUS_URLS:
            if url in squeezed:
                raise _ActiveContent(f"{url!r} URL in attribute {local!r} of <{element}>")
        if element == "use" and _DANGEROUS_SVG_URL in squeezed:
            raise _ActiveContent("<use> of an inline SVG document")


def _svg_active_content(path: Path) -> str | None:
    """Why the SVG at `path` may run script or reach outside itself, or None if it is inert."""
    if path.stat().st_size > SVG_MAX_BYTES:
        return f"SVG larger than {SVG_MAX_BYTES} bytes: too large to verify free of active content"
    parser = xml.parsers.expat.ParserCreate(namespace_separator=" ")

    def start(name: str, attributes: dict[str, str]) -> None:
        namespace, _, local = name.rpartition(" ")
        element = local.lower()
        if element in _ACTIVE_ELEMENTS:
            raise _ActiveContent(f"<{local}> element")
        if element == "include" and namespace == _XINCLUDE:
            raise _ActiveContent("XInclude <include> element")
        _check_attributes(element, attributes)

    def entity(name: str, *_: object) -> None:
        raise _ActiveContent(f"ENTITY declaration {name!r} (entity expansion / XXE)")

    def instruction(target: str, data: str) -> None:
        if target.lower() == "xml-stylesheet" and "xsl" in data.lower():
            raise _ActiveContent("XSLT stylesheet processing instruction")

    def external(*_: object) -> int:
        raise _ActiveContent("external entity reference (XXE)")

    parser.StartElementHandler = start
    parser.EntityDeclHandler = entity
    parser.ProcessingInstructionHandler = instruction
    parser.ExternalEntityRefHandler = external
    try:
        with path.open("rb") as upload:
            while chunk := upload.read(CHUNK):
                parser.Parse(chunk, False)
            parser.Parse(b"", True)
    except _ActiveContent as finding:
        return f"SVG contains {finding}"
    except xml.parsers.expat.ExpatError as error:
        reason = xml.parsers.expat.ErrorString(error.code)
        return f"SVG is not well-formed XML ({reason}, line {error.lineno}): cannot verify it free of active content"
    except LookupError as error:
        return (
            f"SVG declares an encoding that cannot be read ({error}): cannot verify it free of active content"
        )
    return None
