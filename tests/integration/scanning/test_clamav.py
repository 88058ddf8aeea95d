"""scanning.clamav against a real clamd: verdicts, limits, a daemon that is down, dies or hangs.

The test files are built here: the EICAR string and our marker are never spelled out in one piece, so
this file is not itself "infected" for a scanner that reads the repository.
"""

from __future__ import annotations

import asyncio
import io
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import zipfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

import scanning.clamav
from scanning.clamav import (
    MAX_SCANNABLE_BYTES,
    ClamdClient,
    ClamdError,
    parse_database_version,
    verdict_from_reply,
)
from scanning.verdicts import Clean, Infected, ScanError
from tests.clamd import (
    CLAMD_SH,
    OFFICIAL,
    RunningClamd,
    clamd_sh,
    free_port,
    start_clamd,
    stop_clamd,
)
from tests.local_user import connects_as, loose_modes, tcp_listeners

EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
MARKER = b"FILEGATE-TEST-MALWARE-" + b"MARKER-7f3a"
CLAM_EXE = Path("/usr/share/clamav-testfiles/clam.exe")
MiB = 1024 * 1024


async def chunks_of(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


@pytest.fixture
def random_file(tmp_path: Path) -> Iterator[Callable[[int], Path]]:
    """Makes files of fresh random bytes (never in clamd's clean cache); deleted after the test,
    because pytest keeps the tmp dirs of the last runs."""
    made: list[Path] = []

    def make(mib: int) -> Path:
        path = tmp_path / f"random-{len(made)}.bin"
        with path.open("wb") as f:
            for _ in range(mib):
                f.write(os.urandom(MiB))
        made.append(path)
        return path

    yield make
    for path in made:
        path.unlink(missing_ok=True)


def zipped(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(name, data)
    return buf.getvalue()


def assert_eicar(verdict: object) -> None:
    assert isinstance(verdict, Infected), verdict
    assert "eicar" in verdict.signature.lower()
    assert verdict.scanner == "clamav"
    if not OFFICIAL:
        assert verdict.signature.endswith(".UNOFFICIAL")


# -- replies and URLs, no daemon needed ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("stream: OK\0", Clean("clamav", "27830")),
        ("stream: Eicar-Test-Signature FOUND\0", Infected("Eicar-Test-Signature", "clamav", "27830")),
        (
            "stream: Win.Test.EICAR_HDB-1(44d88612fea8a8f36de82e1278abb02f:68) FOUND",
            Infected("Win.Test.EICAR_HDB-1", "clamav", "27830"),
        ),
        (
            "stream: Heuristics.Limits.Exceeded.MaxFileSize FOUND",
            ScanError(
                "scan_limits_exceeded",
                "clamd stopped at a limit: Heuristics.Limits.Exceeded.MaxFileSize",
                False,
            ),
        ),
        (
            "stream: Heuristics.Limits.Exceeded.MaxScanTime FOUND",
            ScanError(
                "scan_limits_exceeded",
                "clamd stopped at a limit: Heuristics.Limits.Exceeded.MaxScanTime",
                True,
            ),
        ),
        (
            "stream: Heuristics.Encrypted.Zip FOUND",
            ScanError("encrypted", "encrypted content cannot be scanned: Heuristics.Encrypted.Zip", False),
        ),
        (
            "INSTREAM size limit exceeded. ERROR\0",
            ScanError("stream_limit_exceeded", "INSTREAM size limit exceeded. ERROR", False),
        ),
        (
            "stream: Can't allocate memory ERROR",
            ScanError("scanner_error", "stream: Can't allocate memory ERROR", True),
        ),
    ],
)
def test_replies_map_to_verdicts(reply: str, expected: object) -> None:
    assert verdict_from_reply(reply, "27830") == expected


def test_an_unknown_reply_is_a_retryable_error() -> None:
    verdict = verdict_from_reply("PONG")
    assert isinstance(verdict, ScanError)
    assert (verdict.reason, verdict.retryable) == ("scanner_error", True)


def test_database_version_is_parsed_from_version() -> None:
    assert parse_database_version("ClamAV 1.4.6/27830/Sat Nov 22 09:24:01 2025") == "27830"
    assert parse_database_version("ClamAV 1.4.6") is None  # the client then reports the engine version


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:3310",
        "tcp://",
        "tcp://host:notaport",
        "unix://relative/path",
        "unix:relative",
        "unix://",
        "127.0.0.1:3310",
    ],
)
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        ClamdClient(url)


# -- a running clamd ----------------------------------------------------------------------------------


async def test_ping(clamd_url: str) -> None:
    assert await ClamdClient(clamd_url).ping() is True


async def test_version(clamd_url: str) -> None:
    client = ClamdClient(clamd_url)
    version = await client.version()
    assert version.startswith("ClamAV 1.")
    db = await client.database_version()
    # The database number when official databases are loaded, else the engine version (our signatures only).
    assert db == (parse_database_version(version) or version.strip()[:64])
    if OFFICIAL and parse_database_version(version) is None:
        pytest.fail(f"FILEGATE_CLAMD_OFFICIAL=1 but clamd reports no database version: {version}")


async def test_eicar_is_infected(clamd_url: str) -> None:
    assert_eicar(await ClamdClient(clamd_url).scan_stream(chunks_of(EICAR)))


async def test_eicar_file_over_the_unix_socket(clamd: RunningClamd, tmp_path: Path) -> None:
    path = tmp_path / "eicar.com"
    path.write_bytes(EICAR)
    assert_eicar(await ClamdClient(clamd.unix_url).scan_file(path))


async def test_eicar_inside_text_is_infected(clamd_url: str) -> None:
    data = b"just some notes\n" * 1000 + EICAR + b"\nmore notes\n"
    # The official EICAR signature only matches the file itself; ours (always loaded) anywhere.
    assert_eicar(await ClamdClient(clamd_url).scan_stream(chunks_of(data)))


async def test_eicar_in_a_zip_and_in_a_zip_in_a_zip(clamd_url: str) -> None:
    client = ClamdClient(clamd_url)
    once = zipped("eicar.com", EICAR)
    assert_eicar(await client.scan_stream(chunks_of(once)))
    assert_eicar(await client.scan_stream(chunks_of(zipped("inner.zip", once))))


async def test_clam_exe_from_clamav_testfiles(clamd_url: str) -> None:
    assert CLAM_EXE.exists(), "install the Debian package clamav-testfiles (scripts/install.sh)"
    verdict = await ClamdClient(clamd_url).scan_file(CLAM_EXE)
    assert isinstance(verdict, Infected), verdict
    if not OFFICIAL:
        assert verdict.signature == "Filegate.Test.ClamExe.UNOFFICIAL"


async def test_filegate_marker_is_infected(clamd_url: str) -> None:
    data = os.urandom(300_000) + MARKER + os.urandom(300_000)
    verdict = await ClamdClient(clamd_url).scan_stream(chunks_of(data))
    assert verdict == Infected("Filegate.Test.Marker.UNOFFICIAL", "clamav", verdict.database_version)


async def test_random_bytes_are_clean(clamd_url: str, tmp_path: Path) -> None:
    path = tmp_path / "random.bin"
    path.write_bytes(os.urandom(3 * MiB))
    verdict = await ClamdClient(clamd_url).scan_file(path)
    assert isinstance(verdict, Clean), verdict
    assert verdict.scanner == "clamav"


async def test_an_empty_stream_is_clean(clamd_url: str) -> None:
    assert isinstance(await ClamdClient(clamd_url).scan_stream(chunks_of(b"")), Clean)


async def test_empty_chunks_do_not_end_the_stream(clamd_url: str) -> None:
    async def gappy() -> AsyncIterator[bytes]:
        yield b"hello "
        yield b""  # sent as a frame this would end the stream before EICAR
        yield EICAR

    assert_eicar(await ClamdClient(clamd_url).scan_stream(gappy()))


async def test_concurrent_scans_get_their_own_answers(clamd_url: str) -> None:
    client = ClamdClient(clamd_url)
    datas = [EICAR if i % 3 == 0 else os.urandom(200_000) for i in range(24)]
    verdicts = await asyncio.gather(*(client.scan_stream(chunks_of(d)) for d in datas))
    for data, verdict in zip(datas, verdicts, strict=True):
        if data == EICAR:
            assert_eicar(verdict)
        else:
            assert isinstance(verdict, Clean), verdict


async def test_encrypted_zip_cannot_be_scanned(clamd_url: str, tmp_path: Path) -> None:
    assert shutil.which("zip"), "install the Debian package zip (scripts/install.sh)"
    (tmp_path / "secret.txt").write_text("nothing to see here\n" * 100)
    subprocess.run(["zip", "-q", "-e", "-P", "pw", "secret.zip", "secret.txt"], cwd=tmp_path, check=True)
    verdict = await ClamdClient(clamd_url).scan_file(tmp_path / "secret.zip")
    assert isinstance(verdict, ScanError), verdict
    assert (verdict.reason, verdict.retryable) == ("encrypted", False)
    assert "Heuristics.Encrypted" in verdict.detail


async def test_a_200_mb_file_is_clean(
    clamd_url: str, random_file: Callable[[int], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path = random_file(200)
    started = time.perf_counter()
    verdict = await ClamdClient(clamd_url).scan_file(path)
    elapsed = time.perf_counter() - started
    assert isinstance(verdict, Clean), verdict
    with capsys.disabled():
        print(f"\n  clamd INSTREAM, 200 MiB file: {elapsed:.2f} s, {200 / elapsed:.0f} MiB/s")


# -- limits -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk_size", [64 * 1024, 1024 * 1024])
async def test_over_stream_max_length_the_answer_is_not_lost(
    small_clamd: RunningClamd, tmp_path: Path, chunk_size: int
) -> None:
    path = tmp_path / "over.bin"
    path.write_bytes(os.urandom(8 * MiB))
    client = ClamdClient(small_clamd.url, chunk_size=chunk_size)
    # Repeated: whether clamd's answer or its closed socket reaches us first is a race.
    for _ in range(10):
        verdict = await client.scan_file(path)
        assert isinstance(verdict, ScanError), verdict
        assert (verdict.reason, verdict.retryable) == ("stream_limit_exceeded", False), verdict
    verdict = await client.scan_stream(chunks_of(path.read_bytes(), chunk_size))
    assert isinstance(verdict, ScanError), verdict
    assert verdict.reason == "stream_limit_exceeded"


async def test_under_stream_max_length_still_scans(small_clamd: RunningClamd) -> None:
    assert_eicar(await ClamdClient(small_clamd.url).scan_stream(chunks_of(os.urandom(500_000) + EICAR)))


async def test_an_archive_over_the_scan_limits_is_not_clean(small_clamd: RunningClamd) -> None:
    # 4 MiB of zeros zip to a few KiB: the stream is small, the file inside is over MaxFileSize.
    bomb = zipped("zeros.bin", bytes(4 * MiB))
    assert len(bomb) < 100_000
    verdict = await ClamdClient(small_clamd.url).scan_stream(chunks_of(bomb))
    assert isinstance(verdict, ScanError), verdict
    assert (verdict.reason, verdict.retryable) == ("scan_limits_exceeded", False)
    assert "Heuristics.Limits.Exceeded" in verdict.detail


async def test_over_max_scan_time_is_a_retryable_limit(random_file: Callable[[int], Path]) -> None:
    slow = start_clamd("scantime", CLAMD_EXTRA_CONF="MaxScanTime 20")
    try:
        path = random_file(64)
        verdict = await ClamdClient(slow.url).scan_file(path)
        assert isinstance(verdict, ScanError), verdict
        assert (verdict.reason, verdict.retryable) == ("scan_limits_exceeded", True)
        assert verdict.detail.endswith("Heuristics.Limits.Exceeded.MaxScanTime")
    finally:
        stop_clamd(slow)


async def test_over_2_gib_is_refused_without_asking_clamd(tmp_path: Path) -> None:
    path = tmp_path / "sparse.bin"
    with path.open("wb") as f:
        f.truncate(MAX_SCANNABLE_BYTES + 1)  # sparse: no disk used
    nobody = ClamdClient(f"tcp://127.0.0.1:{free_port()}")
    for verdict in (
        await nobody.scan_file(path),
        await nobody.scan_file(tmp_path / "sparse.bin", size_hint=3 * 1024**3),
        await nobody.scan_stream(chunks_of(b"x"), size_hint=MAX_SCANNABLE_BYTES + 1),
    ):
        assert isinstance(verdict, ScanError), verdict
        assert (verdict.reason, verdict.retryable) == ("too_large_to_scan", False)


async def test_a_stream_growing_over_the_limit_is_cut_off(
    clamd_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scanning.clamav, "MAX_SCANNABLE_BYTES", 1 * MiB)
    verdict = await ClamdClient(clamd_url).scan_stream(chunks_of(bytes(2 * MiB)))
    assert isinstance(verdict, ScanError), verdict
    assert (verdict.reason, verdict.retryable) == ("too_large_to_scan", False)


# -- the caller's side failing ----------------------------------------------------------------------------


async def test_a_missing_file_is_unreadable(clamd_url: str, tmp_path: Path) -> None:
    verdict = await ClamdClient(clamd_url).scan_file(tmp_path / "nope")
    assert isinstance(verdict, ScanError), verdict
    assert (verdict.reason, verdict.retryable) == ("source_unreadable", False)


async def test_errors_of_the_callers_stream_propagate(clamd_url: str) -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield b"some bytes"
        raise RuntimeError("S3 went away")

    with pytest.raises(RuntimeError, match="S3 went away"):
        await ClamdClient(clamd_url).scan_stream(broken())
    assert await ClamdClient(clamd_url).ping()


# -- clamd down, dying, hanging -----------------------------------------------------------------------


async def test_nothing_listening_is_unavailable_and_fast(tmp_path: Path) -> None:
    for url in (f"tcp://127.0.0.1:{free_port()}", f"unix://{tmp_path / 'no.sock'}"):
        client = ClamdClient(url)
        started = time.monotonic()
        verdict = await client.scan_stream(chunks_of(EICAR))
        assert time.monotonic() - started < 2
        assert isinstance(verdict, ScanError), verdict
        assert (verdict.reason, verdict.retryable) == ("scanner_unavailable", True)
        assert await client.ping() is False
        with pytest.raises(ClamdError):
            await client.version()
        assert await client.database_version() is None


async def test_clamd_killed_mid_scan_is_a_retryable_error(disposable_clamd: RunningClamd) -> None:
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        block = os.urandom(256 * 1024)
        while True:
            yield block
            sent += 1
            if sent == 40:  # 10 MiB in: clamd is reading this stream
                os.kill(disposable_clamd.pid, signal.SIGKILL)
            await asyncio.sleep(0)

    started = time.monotonic()
    verdict = await asyncio.wait_for(ClamdClient(disposable_clamd.url).scan_stream(endless()), 30)
    assert isinstance(verdict, ScanError), verdict
    assert (verdict.reason, verdict.retryable) == ("scanner_unavailable", True)
    assert time.monotonic() - started < 10
    assert sent >= 40


async def test_clamd_killed_while_scanning_a_file(
    disposable_clamd: RunningClamd, random_file: Callable[[int], Path]
) -> None:
    path = random_file(300)
    client = ClamdClient(disposable_clamd.url)
    scan = asyncio.create_task(client.scan_file(path))
    await asyncio.sleep(0.2)
    os.kill(disposable_clamd.pid, signal.SIGKILL)
    verdict = await asyncio.wait_for(scan, 30)
    assert isinstance(verdict, ScanError), verdict
    assert (verdict.reason, verdict.retryable) == ("scanner_unavailable", True)


async def test_a_hung_clamd_times_out(disposable_clamd: RunningClamd) -> None:
    client = ClamdClient(disposable_clamd.url, timeout=1.0)
    assert await client.ping()
    os.kill(disposable_clamd.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        verdict = await client.scan_stream(chunks_of(os.urandom(MiB)))
        elapsed = time.monotonic() - started
        assert isinstance(verdict, ScanError), verdict
        assert (verdict.reason, verdict.retryable) == ("scanner_unavailable", True)
        assert 0.9 < elapsed < 3, elapsed  # timeout + 1 MiB at MIN_SCAN_RATE
        assert await client.ping() is False
    finally:
        os.kill(disposable_clamd.pid, signal.SIGCONT)
    assert await client.ping()


# -- scripts/clamd.sh ---------------------------------------------------------------------------------


def test_clamd_sh_is_idempotent(disposable_clamd: RunningClamd) -> None:
    d, port = str(disposable_clamd.dir), str(disposable_clamd.port)
    again = clamd_sh("start", d, port, env={"CLAMD_OFFICIAL": "0"})
    assert again.returncode == 0, again.stderr
    assert "already running" in again.stdout
    assert clamd_sh("status", d).returncode == 0
    other_port = clamd_sh("start", d, str(free_port()))
    assert other_port.returncode != 0
    assert "already running" in other_port.stderr
    pid = disposable_clamd.pid
    assert clamd_sh("stop", d).returncode == 0
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
    assert clamd_sh("status", d).returncode == 3
    assert clamd_sh("stop", d).returncode == 0
    restarted = clamd_sh("start", d, port, env={"CLAMD_OFFICIAL": "0"})
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr


async def test_clamd_sh_without_a_port_listens_on_no_tcp_port_only_a_private_socket() -> None:
    """The embedded shape: on TCP any local user could send clamd SHUTDOWN; it has no authentication."""
    directory = Path(tempfile.mkdtemp(prefix="filegate-clamd-unix-"))
    try:
        started = clamd_sh("start", str(directory), env={"CLAMD_OFFICIAL": "0"})
        assert started.returncode == 0, started.stdout + started.stderr
        pid = int((directory / "run" / "clamd.pid").read_text())
        assert tcp_listeners(pid) == []
        sock = directory / "run" / "clamd.sock"
        assert (directory / "run").stat().st_mode & 0o777 == 0o700
        assert sock.stat().st_mode & 0o777 == 0o600
        assert await ClamdClient(f"unix://{sock}").ping()
        assert clamd_sh("status", str(directory)).returncode == 0
        again = clamd_sh("start", str(directory), env={"CLAMD_OFFICIAL": "0"})
        assert again.returncode == 0, again.stderr
        assert "already running" in again.stdout
        assert clamd_sh("start", str(directory), str(free_port())).returncode != 0  # not a second shape
        assert loose_modes(directory) == []  # config, pid, logs, signatures: the owner's alone
        if os.geteuid() == 0:
            assert not connects_as(sock)
            assert await ClamdClient(f"unix://{sock}").ping()  # still up: nobody could not SHUTDOWN it
    finally:
        assert clamd_sh("stop", str(directory)).returncode == 0
        shutil.rmtree(directory, ignore_errors=True)


async def test_clamd_sh_run_by_a_normal_user_keeps_its_socket_to_that_user() -> None:
    """Without root clamd keeps the caller's user: the socket is that user's alone, not another's."""
    if os.geteuid() != 0:
        pytest.skip("needs root to act as two other users")
    directory = Path(tempfile.mkdtemp(prefix="filegate-clamd-user-"))
    shutil.chown(directory, "nobody")
    # A PATH that user can read: the system python3 (clamd.sh pings the socket with it) and clamd.
    as_nobody = [
        "runuser",
        "-u",
        "nobody",
        "--",
        "env",
        "PATH=/usr/bin:/bin:/usr/sbin:/sbin",
        "CLAMD_OFFICIAL=0",
    ]
    try:
        started = subprocess.run(
            [*as_nobody, "bash", str(CLAMD_SH), "start", str(directory)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert started.returncode == 0, started.stdout + started.stderr
        pid = int((directory / "run" / "clamd.pid").read_text())
        assert Path(f"/proc/{pid}").stat().st_uid == pwd.getpwnam("nobody").pw_uid
        assert tcp_listeners(pid) == []
        sock = directory / "run" / "clamd.sock"
        assert sock.stat().st_uid == pwd.getpwnam("nobody").pw_uid
        assert sock.stat().st_mode & 0o777 == 0o600
        assert loose_modes(directory) == []
        assert connects_as(sock)  # its user
        assert not connects_as(sock, user="daemon")  # anyone else
    finally:
        subprocess.run([*as_nobody, "bash", str(CLAMD_SH), "stop", str(directory)], timeout=60, check=False)
        shutil.rmtree(directory, ignore_errors=True)
