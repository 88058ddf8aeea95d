"""Archive limits: bombs, nesting, recursion, encryption and damage, with memory measured while walking."""

from __future__ import annotations

import bz2
import io
import lzma
import random
import struct
import tarfile
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import pytest

from scanning import samples
from scanning.archives import (
    RATIO_MIN_BYTES,
    SPOOL_IN_MEMORY,
    TAR_HEADER_BUDGET,
    ArchiveLimits,
    inspect,
    zip_readable,
)
from scanning.verdicts import Rejected

MIB = 1024 * 1024
DEFAULT = ArchiveLimits(max_depth=2, max_members=1000, max_total_size=1024**3, max_ratio=100)
# Limits loose enough that only the one under test can trip.
LOOSE = ArchiveLimits(max_depth=10, max_members=100_000, max_total_size=64 * 1024**3, max_ratio=10_000)
PEAK_LIMIT = 20 * MIB


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def inspect_measured(path: Path, limits: ArchiveLimits) -> tuple[Rejected | None, int]:
    """The verdict and the peak of Python memory allocated while reaching it."""
    tracemalloc.start()
    try:
        verdict = inspect(path, limits)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return verdict, peak


def reason(verdict: Rejected | None) -> str | None:
    return verdict.reason if verdict is not None else None


def zip_of(members: dict[str, bytes], compression: int) -> bytes:
    return samples.zip_bytes(members, compression=compression)


def zip_streamed(name: str, size: int, compression: int) -> bytes:
    """A zip of one member of `size` zero bytes, written in chunks with `compression`."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive, archive.open(name, "w") as member:
        for _ in range(size // MIB):
            member.write(bytes(MIB))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def zip_bomb() -> bytes:
    return samples.zip_bomb(50 * MIB)


# --- Clean archives ---------------------------------------------------------------------------------------


def test_plain_zip_passes(tmp_path: Path) -> None:
    data = samples.zip_bytes(
        {"a.txt": b"hello\n" * 1000, "dir/b.bin": bytes(range(256)) * 100, "empty/": b""}
    )
    assert inspect(write(tmp_path, "a.zip", data), DEFAULT) is None


def test_tar_gz_within_limits_passes(tmp_path: Path) -> None:
    members = {"a.txt": b"hello\n", "b/c.txt": b"x" * 50_000, "nested.zip": samples.zip_bytes({"x": b"y"})}
    assert inspect(write(tmp_path, "a.tar.gz", samples.tar_gz_bytes(members)), DEFAULT) is None


def test_plain_tar_passes(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, content in {"a.txt": b"hello", "b.txt": b"world" * 1000}.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
        archive.addfile(tarfile.TarInfo("dir"))
    assert inspect(write(tmp_path, "a.tar", buffer.getvalue()), DEFAULT) is None


@pytest.mark.parametrize(
    ("suffix", "compress"),
    [("bz2", bz2.compress), ("xz", lambda data: lzma.compress(data, format=lzma.FORMAT_XZ))],
)
def test_single_bzip2_and_xz_streams_pass(tmp_path: Path, suffix: str, compress: object) -> None:
    assert callable(compress)
    data = compress(b"some text\n" * 1000)
    assert inspect(write(tmp_path, f"a.{suffix}", data), DEFAULT) is None


def test_office_document_passes(tmp_path: Path) -> None:
    assert inspect(write(tmp_path, "a.docx", samples.docx_bytes()), DEFAULT) is None


def test_path_traversal_names_are_not_a_reason_by_themselves(tmp_path: Path) -> None:
    data = samples.zip_bytes({"../../etc/passwd": b"root:x:0:0\n", "/abs/path": b"x"})
    assert inspect(write(tmp_path, "a.zip", data), DEFAULT) is None


def test_small_highly_compressible_member_is_not_refused_for_its_ratio(tmp_path: Path) -> None:
    data = samples.zip_bytes({"blank.bmp": bytes(RATIO_MIN_BYTES // 2)})
    assert inspect(write(tmp_path, "a.zip", data), DEFAULT) is None


# --- Bombs ------------------------------------------------------------------------------------------------


def test_zip_bomb_is_refused_by_ratio_in_bounded_memory(tmp_path: Path, zip_bomb: bytes) -> None:
    verdict, peak = inspect_measured(write(tmp_path, "bomb.zip", zip_bomb), DEFAULT)
    assert reason(verdict) == "archive_limits"
    assert verdict is not None
    assert "100:1" in verdict.detail
    assert peak < PEAK_LIMIT


def test_zip_bomb_is_refused_by_total_size_when_ratio_allows_it(tmp_path: Path, zip_bomb: bytes) -> None:
    limits = ArchiveLimits(max_depth=2, max_members=10, max_total_size=20 * MIB, max_ratio=10_000)
    verdict, peak = inspect_measured(write(tmp_path, "bomb.zip", zip_bomb), limits)
    assert verdict == Rejected("archive_limits", f"archive expands to more than {20 * MIB} bytes")
    assert peak < PEAK_LIMIT


def test_whole_bomb_is_read_in_bounded_memory_when_the_limits_allow_it(
    tmp_path: Path, zip_bomb: bytes
) -> None:
    verdict, peak = inspect_measured(write(tmp_path, "bomb.zip", zip_bomb), LOOSE)
    assert verdict is None
    assert peak < PEAK_LIMIT


def test_nested_bomb_is_refused_in_bounded_memory(tmp_path: Path) -> None:
    data = samples.nested_bomb(levels=3, fanout=10, bomb_size=10 * MIB)
    limits = ArchiveLimits(max_depth=5, max_members=100_000, max_total_size=1024**3, max_ratio=100)
    verdict, peak = inspect_measured(write(tmp_path, "42.zip", data), limits)
    assert reason(verdict) == "archive_limits"
    assert peak < PEAK_LIMIT


def test_nested_bomb_is_refused_by_total_size_when_ratio_allows_it(tmp_path: Path) -> None:
    data = samples.nested_bomb(levels=3, fanout=10, bomb_size=10 * MIB)
    limits = ArchiveLimits(max_depth=5, max_members=100_000, max_total_size=200 * MIB, max_ratio=1_000_000)
    verdict, peak = inspect_measured(write(tmp_path, "42.zip", data), limits)
    assert verdict == Rejected("archive_limits", f"archive expands to more than {200 * MIB} bytes")
    assert peak < PEAK_LIMIT


def test_many_small_members_trip_the_overall_ratio(tmp_path: Path) -> None:
    members = {f"part-{index}": bytes(900 * 1024) for index in range(20)}
    verdict = inspect(write(tmp_path, "parts.zip", samples.zip_bytes(members)), DEFAULT)
    assert verdict == Rejected("archive_limits", "archive expands more than 100:1 overall")


def test_incompressible_content_over_total_size(tmp_path: Path) -> None:
    noise = random.Random(0).randbytes(3 * MIB)
    limits = ArchiveLimits(max_depth=2, max_members=10, max_total_size=MIB, max_ratio=100)
    verdict = inspect(write(tmp_path, "noise.zip", samples.zip_bytes({"noise": noise})), limits)
    assert verdict == Rejected("archive_limits", f"archive expands to more than {MIB} bytes")


def test_gzip_bomb_is_refused_in_bounded_memory(tmp_path: Path) -> None:
    verdict, peak = inspect_measured(write(tmp_path, "bomb.gz", samples.gzip_bomb(50 * MIB)), DEFAULT)
    assert reason(verdict) == "archive_limits"
    assert peak < PEAK_LIMIT


def test_tar_gz_bomb_is_refused_by_the_stream_ratio(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        info = tarfile.TarInfo("zeros")
        info.size = 30 * MIB
        archive.addfile(info, io.BytesIO(bytes(info.size)))
    verdict, peak = inspect_measured(write(tmp_path, "bomb.tar.gz", buffer.getvalue()), DEFAULT)
    assert reason(verdict) == "archive_limits"
    assert peak < PEAK_LIMIT


@pytest.mark.parametrize("compression", [zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
def test_bzip2_and_lzma_zip_members_are_decompressed_in_bounded_steps(
    tmp_path: Path, compression: int
) -> None:
    # zipfile itself would expand a bzip2 member's first 4 KiB to tens of megabytes at once.
    path = write(tmp_path, "bomb.zip", zip_streamed("zeros", 40 * MIB, compression))
    verdict, peak = inspect_measured(path, DEFAULT)
    assert reason(verdict) == "archive_limits"
    assert peak < PEAK_LIMIT
    # bzip2 turns runs of zeros into about a millionth of their size: let only size bound this read.
    unbounded_ratio = ArchiveLimits(max_depth=2, max_members=10, max_total_size=1024**3, max_ratio=10**9)
    verdict, peak = inspect_measured(path, unbounded_ratio)
    assert verdict is None
    assert peak < PEAK_LIMIT


@pytest.mark.parametrize("compression", [zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
def test_bzip2_and_lzma_zip_members_pass_and_are_crc_checked(tmp_path: Path, compression: int) -> None:
    content = b"the quick brown fox\n" * 500
    data = zip_of({"fox.txt": content}, compression)
    assert inspect(write(tmp_path, "ok.zip", data), DEFAULT) is None
    crc_at = data.find(b"PK\x01\x02") + 16
    damaged = bytearray(data)
    damaged[crc_at] ^= 0xFF
    verdict = inspect(write(tmp_path, "bad.zip", bytes(damaged)), DEFAULT)
    assert reason(verdict) == "corrupt_archive"


def test_xz_asking_for_a_huge_dictionary_is_refused(tmp_path: Path) -> None:
    data = bytearray(lzma.compress(b"hello" * 100, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32))
    header_size = (data[12] + 1) * 4
    dictionary_at = 12 + data[12 : 12 + header_size].index(b"\x21\x01") + 2
    data[dictionary_at] = 40  # LZMA2 dictionary of 4 GiB
    crc = zlib.crc32(bytes(data[12 : 12 + header_size - 4]))
    data[12 + header_size - 4 : 12 + header_size] = struct.pack("<I", crc)
    verdict = inspect(write(tmp_path, "huge.xz", bytes(data)), DEFAULT)
    assert reason(verdict) == "archive_limits"


def test_tar_header_larger_than_its_budget_is_refused(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        info = tarfile.TarInfo("a.txt")
        info.size = 1
        info.pax_headers = {"comment": "x" * (TAR_HEADER_BUDGET + 1024)}
        archive.addfile(info, io.BytesIO(b"x"))
    verdict, peak = inspect_measured(write(tmp_path, "pax.tar", buffer.getvalue()), DEFAULT)
    assert verdict == Rejected("archive_limits", f"tar member headers larger than {TAR_HEADER_BUDGET} bytes")
    assert peak < PEAK_LIMIT


# --- Members, depth, recursion ------------------------------------------------------------------------------


def test_too_many_members(tmp_path: Path) -> None:
    verdict = inspect(write(tmp_path, "many.zip", samples.many_members_zip(1001)), DEFAULT)
    assert verdict == Rejected("archive_limits", "archive has more than 1000 members")


def test_members_are_counted_across_levels(tmp_path: Path) -> None:
    inner = samples.many_members_zip(600)
    outer = samples.zip_bytes({"a.zip": inner, "b.zip": inner})
    verdict = inspect(write(tmp_path, "outer.zip", outer), DEFAULT)
    assert verdict == Rejected("archive_limits", "archive has more than 1000 members")


def test_zip_directory_far_larger_than_the_member_limit_is_refused_before_it_is_loaded(
    tmp_path: Path,
) -> None:
    limits = ArchiveLimits(max_depth=2, max_members=10, max_total_size=1024**3, max_ratio=100)
    verdict = inspect(write(tmp_path, "many.zip", samples.many_members_zip(5000)), limits)
    assert reason(verdict) == "archive_limits"
    assert verdict is not None
    assert "directory" in verdict.detail


def test_nesting_up_to_max_depth_passes(tmp_path: Path) -> None:
    assert inspect(write(tmp_path, "n.zip", samples.nested_zip(2)), DEFAULT) is None


def test_nested_archive_larger_than_the_in_memory_spool_is_walked(tmp_path: Path) -> None:
    noise = random.Random(2).randbytes(3 * MIB)
    inner = samples.zip_bytes({"noise.bin": noise, "bomb.zip": samples.zip_bomb(20 * MIB)})
    outer = samples.zip_bytes({"inner.zip": inner}, compression=zipfile.ZIP_STORED)
    assert len(inner) > SPOOL_IN_MEMORY
    verdict, peak = inspect_measured(write(tmp_path, "outer.zip", outer), DEFAULT)
    assert verdict == Rejected("archive_limits", "member 'zeros-0.bin' expands more than 100:1")
    assert peak < PEAK_LIMIT
    clean = samples.zip_bytes({"inner.zip": samples.zip_bytes({"noise.bin": noise})})
    assert inspect(write(tmp_path, "clean.zip", clean), DEFAULT) is None


def test_nesting_deeper_than_max_depth_is_refused(tmp_path: Path) -> None:
    verdict = inspect(write(tmp_path, "n.zip", samples.nested_zip(3)), DEFAULT)
    assert verdict == Rejected("archive_limits", "'inner.zip' is an archive nested deeper than 2 levels")


def test_max_depth_zero_refuses_any_nested_archive(tmp_path: Path) -> None:
    limits = ArchiveLimits(max_depth=0, max_members=10, max_total_size=MIB, max_ratio=100)
    assert inspect(write(tmp_path, "flat.zip", samples.nested_zip(0)), limits) is None
    assert reason(inspect(write(tmp_path, "n.zip", samples.nested_zip(1)), limits)) == "archive_limits"


def test_nested_archive_inside_a_tar_gz_counts_as_a_level(tmp_path: Path) -> None:
    data = samples.tar_gz_bytes({"deep.zip": samples.nested_zip(2)})
    verdict = inspect(write(tmp_path, "a.tar.gz", data), DEFAULT)
    assert verdict == Rejected("archive_limits", "'inner.zip' is an archive nested deeper than 2 levels")


def test_zip_quine_is_refused_as_recursive(tmp_path: Path) -> None:
    quine = samples.quine_zip()
    with zipfile.ZipFile(io.BytesIO(quine)) as archive:
        assert archive.read("r.zip") == quine  # it really contains itself
    verdict = inspect(write(tmp_path, "r.zip", quine), DEFAULT)
    assert verdict == Rejected(
        "archive_limits", "'r.zip' is a copy of an archive that contains it (recursive archive)"
    )


def test_zip_quine_is_refused_by_depth_when_nesting_is_not_allowed(tmp_path: Path) -> None:
    limits = ArchiveLimits(max_depth=0, max_members=10, max_total_size=MIB, max_ratio=100)
    verdict = inspect(write(tmp_path, "r.zip", samples.quine_zip()), limits)
    assert verdict == Rejected("archive_limits", "'r.zip' is an archive nested deeper than 0 levels")


def test_deep_chain_of_identical_wrappers_is_refused(tmp_path: Path) -> None:
    verdict = inspect(write(tmp_path, "deep.zip", samples.nested_zip(12)), LOOSE)
    assert reason(verdict) == "archive_limits"


# --- Encryption, damage, unsupported ----------------------------------------------------------------------


def test_encrypted_zip(tmp_path: Path) -> None:
    verdict = inspect(write(tmp_path, "secret.zip", samples.encrypted_zip()), DEFAULT)
    assert verdict == Rejected("encrypted_archive", "'secret.txt' is encrypted")


def test_encrypted_member_of_a_nested_zip(tmp_path: Path) -> None:
    data = samples.zip_bytes({"inner.zip": samples.encrypted_zip()})
    assert reason(inspect(write(tmp_path, "outer.zip", data), DEFAULT)) == "encrypted_archive"


def test_bad_crc_is_corrupt(tmp_path: Path) -> None:
    verdict = inspect(write(tmp_path, "bad.zip", samples.corrupt_zip()), DEFAULT)
    assert reason(verdict) == "corrupt_archive"


def test_truncated_zip_is_corrupt(tmp_path: Path) -> None:
    data = samples.zip_bytes({"a.txt": b"hello" * 100})
    assert reason(inspect(write(tmp_path, "cut.zip", data[: len(data) // 2]), DEFAULT)) == "corrupt_archive"


def test_truncated_gzip_is_corrupt(tmp_path: Path) -> None:
    data = samples.tar_gz_bytes({"a.txt": random.Random(1).randbytes(10_000)})
    assert reason(inspect(write(tmp_path, "cut.tgz", data[:-100]), DEFAULT)) == "corrupt_archive"


def test_not_an_archive_is_corrupt(tmp_path: Path) -> None:
    assert reason(inspect(write(tmp_path, "x.zip", b"hello, not an archive\n"), DEFAULT)) == "corrupt_archive"


def test_unsupported_zip_method(tmp_path: Path) -> None:
    data = bytearray(samples.zip_bytes({"a.txt": b"hello"}, compression=zipfile.ZIP_STORED))
    for method_at in (data.find(b"PK\x03\x04") + 8, data.find(b"PK\x01\x02") + 10):
        struct.pack_into("<H", data, method_at, 9)  # deflate64
    assert reason(inspect(write(tmp_path, "d64.zip", bytes(data)), DEFAULT)) == "unsupported_archive"


def test_io_errors_are_raised_not_judged(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        inspect(tmp_path / "missing.zip", DEFAULT)


# --- zip_readable -----------------------------------------------------------------------------------------


def test_zip_readable(tmp_path: Path) -> None:
    assert zip_readable(write(tmp_path, "a.zip", samples.zip_bytes({"a": b"b"})))
    assert zip_readable(write(tmp_path, "a.jpg", samples.jpeg_with_zip()))
    assert zip_readable(write(tmp_path, "e.zip", samples.encrypted_zip()))
    assert not zip_readable(write(tmp_path, "a.png", samples.png_bytes()))
    assert not zip_readable(write(tmp_path, "empty.zip", samples.zip_bytes({})))
