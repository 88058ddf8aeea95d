"""Small, valid sample files and hostile ones, built from the stdlib, for tests of the type and archive checks.

Everything here returns bytes: the caller writes them where the test wants them (the quarantine works on
files). The hostile archives stay small on disk however much they would expand to.
"""

from __future__ import annotations

import gzip
import io
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Mapping

_MIB = 1024 * 1024


def png_bytes() -> bytes:
    """A valid 1x1 greyscale PNG (signature, IHDR, IDAT, IEND with correct CRCs)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    # One scanline: filter byte 0, then one white pixel.
    idat = zlib.compress(b"\x00\xff")
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def jpeg_bytes() -> bytes:
    """A valid 1x1 greyscale baseline JPEG: one block whose DC and AC codes are a single one-bit code each."""

    def segment(marker: int, payload: bytes) -> bytes:
        return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload

    one_code = bytes([1] + [0] * 15)  # BITS: a single code of length 1
    return b"".join(
        [
            b"\xff\xd8",
            segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"),
            segment(0xDB, b"\x00" + b"\x01" * 64),
            segment(0xC0, b"\x08\x00\x01\x00\x01\x01\x01\x11\x00"),
            segment(0xC4, b"\x00" + one_code + b"\x00"),
            segment(0xC4, b"\x10" + one_code + b"\x00"),
            segment(0xDA, b"\x01\x01\x00\x00\x3f\x00"),
            # DC category 0 ("0"), then end-of-block ("0"), padded with one bits.
            b"\x3f",
            b"\xff\xd9",
        ]
    )


def gif_bytes() -> bytes:
    """A valid 1x1 GIF89a with a two-colour global palette."""
    return b"".join(
        [
            b"GIF89a",
            struct.pack("<HHBBB", 1, 1, 0x80, 0, 0),  # 1x1, global palette of two colours
            b"\x00\x00\x00\xff\xff\xff",
            b"\x21\xf9\x04\x01\x00\x00\x00\x00",  # graphic control extension
            b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0),  # image descriptor
            b"\x02\x02\x44\x01\x00",  # LZW minimum code size, one sub-block, terminator
            b"\x3b",
        ]
    )


def webp_bytes() -> bytes:
    """A valid 1x1 lossless WebP."""
    return bytes.fromhex("524946461e000000574542505650384c110000002f0000000007d0fffef7bfff8188e87f0000")


def pdf_bytes() -> bytes:
    """A minimal valid one-page PDF with a correct cross-reference table."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 72 72] >>",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def mp4_bytes() -> bytes:
    """An `ftyp` box and an empty `mdat` box: enough for libmagic to say video/mp4."""
    ftyp = b"isom" + struct.pack(">I", 0x200) + b"isomiso2avc1mp41"
    return struct.pack(">I", 8 + len(ftyp)) + b"ftyp" + ftyp + struct.pack(">I", 8) + b"mdat"


def elf_bytes() -> bytes:
    """The 64-byte header of an x86-64 ELF executable (enough for libmagic), padded a little."""
    ident = b"\x7fELF\x02\x01\x01" + bytes(9)
    header = ident + struct.pack("<HHIQQQIHHHHHH", 2, 0x3E, 1, 0x401000, 64, 0, 0, 64, 56, 0, 64, 0, 0)
    return header + bytes(64)


def html_bytes() -> bytes:
    """A small HTML page with a script."""
    return (
        b"<!DOCTYPE html>\n<html><head><title>x</title></head><body><script>alert(1)</script></body></html>\n"
    )


def svg_bytes(inner: str = '<rect width="10" height="10" fill="red"/>', *, comment_padding: int = 0) -> bytes:
    """An SVG document around `inner`, optionally behind an XML comment of `comment_padding` bytes."""
    prolog = '<?xml version="1.0" encoding="UTF-8"?>\n'
    if comment_padding:
        prolog += "<!--" + "x" * comment_padding + "-->\n"
    return (
        prolog + f'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">{inner}</svg>\n'
    ).encode()


def zip_bytes(
    members: Mapping[str, bytes], *, compression: int = zipfile.ZIP_DEFLATED, comment: bytes = b""
) -> bytes:
    """A zip holding `members` (name -> content)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
        archive.comment = comment
    return buffer.getvalue()


def docx_bytes(extra: Mapping[str, bytes] | None = None) -> bytes:
    """A minimal Office Open XML word document (a zip libmagic names as .docx), plus `extra` members."""
    members = {
        "[Content_Types].xml": b'<?xml version="1.0"?>'
        b'<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"/>',
        "_rels/.rels": b"<Relationships/>",
        "word/document.xml": b"<w:document/>",
    }
    return zip_bytes({**members, **(extra or {})})


def zip_bomb(size: int = 50 * _MIB, *, members: int = 1) -> bytes:
    """A zip of `members` members of `size` zero bytes each, written in 1 MiB chunks (about 1000:1)."""
    buffer = io.BytesIO()
    zeros = bytes(_MIB)
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for index in range(members):
            with archive.open(f"zeros-{index}.bin", "w") as member:
                left = size
                while left > 0:
                    member.write(zeros[: min(left, _MIB)])
                    left -= _MIB
    return buffer.getvalue()


def nested_zip(depth: int, payload: bytes = b"hello\n") -> bytes:
    """A zip `depth` levels deep: level 0 holds `payload`, each outer level holds the level below as `inner.zip`."""
    data = zip_bytes({"payload.txt": payload})
    for _ in range(depth):
        data = zip_bytes({"inner.zip": data})
    return data


def nested_bomb(levels: int = 3, fanout: int = 10, bomb_size: int = 10 * _MIB) -> bytes:
    """A 42.zip-style bomb: a zip bomb, then `levels` layers each holding `fanout` copies of the layer below."""
    data = zip_bomb(bomb_size)
    for _ in range(levels):
        data = zip_bytes({f"layer-{index}.zip": data for index in range(fanout)})
    return data


def many_members_zip(count: int) -> bytes:
    """A zip of `count` tiny stored members."""
    return zip_bytes({f"file-{index}.txt": b"x" for index in range(count)}, compression=zipfile.ZIP_STORED)


def encrypted_zip() -> bytes:
    """A zip whose member has the "encrypted" flag bit set (zipfile cannot write real ZipCrypto)."""
    data = bytearray(zip_bytes({"secret.txt": b"attack at dawn\n"}, compression=zipfile.ZIP_STORED))
    local = data.find(b"PK\x03\x04")
    central = data.find(b"PK\x01\x02")
    for flags_at in (local + 6, central + 8):
        (flags,) = struct.unpack_from("<H", data, flags_at)
        struct.pack_into("<H", data, flags_at, flags | 0x1)
    return bytes(data)


def corrupt_zip() -> bytes:
    """A zip whose only member's bytes no longer match its CRC."""
    content = b"the quick brown fox jumps over the lazy dog\n"
    data = bytearray(zip_bytes({"fox.txt": content}, compression=zipfile.ZIP_STORED))
    at = data.find(content)
    data[at] ^= 0x20
    return bytes(data)


def gzip_bomb(size: int = 50 * _MIB) -> bytes:
    """A single gzip stream of `size` zero bytes, compressed in 1 MiB chunks."""
    buffer = io.BytesIO()
    zeros = bytes(_MIB)
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as stream:
        left = size
        while left > 0:
            stream.write(zeros[: min(left, _MIB)])
            left -= _MIB
    return buffer.getvalue()


def tar_gz_bytes(members: Mapping[str, bytes]) -> bytes:
    """A gzip-compressed tar holding `members` (name -> content)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def jpeg_with_zip() -> bytes:
    """A JPEG with a zip appended after its EOI marker (a JPEG/ZIP polyglot)."""
    return jpeg_bytes() + zip_bytes({"payload.html": html_bytes()})


def png_with_html() -> bytes:
    """A PNG with an HTML page appended after its IEND chunk."""
    return png_bytes() + html_bytes()


def gif_js_polyglot() -> bytes:
    """A GIF that is also JavaScript: the screen width opens a comment, the tail closes it and assigns."""
    gif = bytearray(gif_bytes())
    gif[6:8] = b"/*"
    return bytes(gif) + b"*/=alert(document.domain);\n"


def pdf_with_zip() -> bytes:
    """A PDF with a zip appended after its final %%EOF."""
    return pdf_bytes() + zip_bytes({"payload.html": html_bytes()})


# --- A real zip quine -------------------------------------------------------------------------------------
# After Russ Cox, "Zip Files All The Way Down": deflate is a tiny language of "literal n" (a stored block) and
# "repeat n" (a fixed-Huffman copy of distance n) opcodes, and a fixed program of them decompresses to
# prefix + itself + suffix. With the zip local header as prefix and the central directory as suffix, the
# member decompresses to the whole zip. Every opcode is encoded in exactly _OP bytes so the program can
# quote itself; the CRC, which must be the CRC of the file holding it, is a fixed point found by solving a
# 32x32 linear system over GF(2) (CRC-32 is affine in its input).

_OP = 10
_LENGTH_BASE = [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131]
_LENGTH_BASE += [163, 195, 227, 258]
_LENGTH_EXTRA = [0] * 8 + [1] * 4 + [2] * 4 + [3] * 4 + [4] * 4 + [5] * 4 + [0]
_DISTANCE_BASE = [1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537]
_DISTANCE_EXTRA = [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9]


class _BitWriter:
    def __init__(self) -> None:
        self.value = 0
        self.count = 0

    def put(self, value: int, bits: int) -> None:
        self.value |= value << self.count
        self.count += bits

    def code(self, code: int, bits: int) -> None:
        # Huffman codes go in most significant bit first.
        self.put(int(format(code, f"0{bits}b")[::-1], 2), bits)

    def align(self) -> None:
        self.count = -(-self.count // 8) * 8

    def to_bytes(self) -> bytes:
        return self.value.to_bytes(self.count // 8, "little")


def _fixed_symbol(bits: _BitWriter, symbol: int) -> None:
    if symbol < 144:
        bits.code(0x30 + symbol, 8)
    elif symbol < 256:
        bits.code(0x190 + symbol - 144, 9)
    elif symbol < 280:
        bits.code(symbol - 256, 7)
    else:
        bits.code(0xC0 + symbol - 280, 8)


def _copy(bits: _BitWriter, length: int, distance: int) -> None:
    index = max(i for i, base in enumerate(_LENGTH_BASE) if base <= length)
    _fixed_symbol(bits, 257 + index)
    bits.put(length - _LENGTH_BASE[index], _LENGTH_EXTRA[index])
    index = max(i for i, base in enumerate(_DISTANCE_BASE) if base <= distance)
    bits.code(index, 5)
    bits.put(distance - _DISTANCE_BASE[index], _DISTANCE_EXTRA[index])


def _literal_op(length: int) -> bytes:
    # An empty stored block pads the opcode to _OP bytes.
    return b"\x00\x00\x00\xff\xff" + b"\x00" + struct.pack("<HH", length, length ^ 0xFFFF)


def _repeat_op(length: int, *, final: bool = False) -> bytes:
    splits = [[length]] + [[part, length - part] for part in range(3, length - 2)]
    for copies in splits:
        for empty_blocks in range(4):
            bits = _BitWriter()
            bits.put(0, 1)
            bits.put(1, 2)
            for part in copies:
                _copy(bits, part, length)
            _fixed_symbol(bits, 256)
            for _ in range(empty_blocks):
                bits.put(0, 1)
                bits.put(1, 2)
                _fixed_symbol(bits, 256)
            # An empty stored block brings the stream back to a byte boundary.
            bits.put(int(final), 1)
            bits.put(0, 2)
            bits.align()
            bits.put(0, 16)
            bits.put(0xFFFF, 16)
            if bits.count == _OP * 8:
                return bits.to_bytes()
    raise ValueError(f"no {_OP}-byte encoding of repeat {length}")


def _quine_program(prefix: bytes, suffix: bytes) -> bytes:
    p, s, op, quad = len(prefix) + _OP, len(suffix) + _OP, _OP, 4 * _OP
    lit, rep = _literal_op, _repeat_op
    program = [lit(p), prefix, lit(p), rep(p), lit(op), rep(p), lit(op), lit(op), lit(quad), rep(p), lit(op)]
    program += [
        lit(op),
        lit(quad),
        rep(quad),
        lit(quad),
        rep(quad),
        lit(quad),
        rep(quad),
        lit(quad),
        rep(quad),
    ]
    program += [lit(quad), rep(quad), lit(0), lit(0), lit(s), rep(quad), lit(0), lit(0), lit(s)]
    program += [rep(s, final=True), suffix, rep(s, final=True)]
    return b"".join(program)


def _quine_file(crc: int, name: bytes) -> bytes:
    local_size = 30 + len(name)
    central_size = 46 + len(name)
    # The program's length does not depend on the header bytes, so measure it with placeholders.
    program_size = len(_quine_program(bytes(local_size), bytes(central_size + 22)))
    total = local_size + program_size + central_size + 22
    stamp = struct.pack("<HH", 0, 0x21)  # 1980-01-01 00:00
    local = b"PK\x03\x04" + struct.pack("<HH", 20, 0) + struct.pack("<H", 8) + stamp
    local += struct.pack("<IIIHH", crc, program_size, total, len(name), 0) + name
    central = b"PK\x01\x02" + struct.pack("<HHHH", 20, 20, 0, 8) + stamp
    central += struct.pack("<IIIHHHHHII", crc, program_size, total, len(name), 0, 0, 0, 0, 0, 0) + name
    end = b"PK\x05\x06" + struct.pack("<HHHHIIH", 0, 0, 1, 1, central_size, local_size + program_size, 0)
    return local + _quine_program(local, central + end) + central + end


def quine_zip(name: str = "r.zip") -> bytes:
    """A zip whose only member, `name`, decompresses to the very bytes of the zip itself."""
    encoded = name.encode()
    base = zlib.crc32(_quine_file(0, encoded))
    # Column i: how the file's CRC changes when bit i of the stored CRC is set.
    columns = [zlib.crc32(_quine_file(1 << i, encoded)) ^ base for i in range(32)]
    # Solve (M xor I) x = base over GF(2) by Gaussian elimination on augmented rows.
    rows = []
    for row in range(32):
        bits = sum((((columns[col] >> row) & 1) ^ (row == col)) << col for col in range(32))
        rows.append((bits, (base >> row) & 1))
    solution = 0
    pivots: list[int] = []
    for col in range(32):
        pivot = next((r for r in range(len(pivots), 32) if rows[r][0] >> col & 1), None)
        if pivot is None:
            continue
        at = len(pivots)
        rows[at], rows[pivot] = rows[pivot], rows[at]
        for r in range(32):
            if r != at and rows[r][0] >> col & 1:
                rows[r] = (rows[r][0] ^ rows[at][0], rows[r][1] ^ rows[at][1])
        pivots.append(col)
    if any(bits == 0 and rhs for bits, rhs in rows):
        raise ValueError("no CRC fixed point for this layout")
    for at, col in enumerate(pivots):
        solution |= rows[at][1] << col
    return _quine_file(solution, encoded)
