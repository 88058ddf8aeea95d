"""Private clamd daemons for the scanning tests, started with scripts/clamd.sh.

Each xdist worker starts its own under /tmp (not pytest's tmp dir: that is mode 0700 and clamd drops
to the clamav user) on a free port, and stops it at the end of the session. By default they load only
our test signatures (scanning/signatures: ~0.1 s to start); FILEGATE_CLAMD_OFFICIAL=1 also loads the
official databases from /var/lib/clamav when present (10-20 s and ~1 GB of RAM per daemon).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CLAMD_SH = ROOT / "scripts" / "clamd.sh"
OFFICIAL = os.environ.get("FILEGATE_CLAMD_OFFICIAL") == "1"


@dataclass(frozen=True)
class RunningClamd:
    dir: Path
    port: int

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    @property
    def unix_url(self) -> str:
        return f"unix://{self.dir / 'run' / 'clamd.sock'}"

    @property
    def pid(self) -> int:
        return int((self.dir / "run" / "clamd.pid").read_text().strip())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clamd_sh(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLAMD_SH), *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def start_clamd(name: str, **env: str) -> RunningClamd:
    """Start a clamd in a new directory; a few tries, as another process may take the free port first."""
    if shutil.which("clamd") is None and not Path("/usr/sbin/clamd").exists():
        pytest.fail("clamd is not installed: run scripts/install.sh (Debian package clamav-daemon)")
    env = {"CLAMD_OFFICIAL": "auto" if OFFICIAL else "0", **env}
    directory = Path(tempfile.mkdtemp(prefix=f"filegate-clamd-{name}-"))
    output = ""
    for _ in range(3):
        port = free_port()
        result = clamd_sh("start", str(directory), str(port), env=env)
        if result.returncode == 0:
            return RunningClamd(directory, port)
        output = result.stdout + result.stderr
        clamd_sh("stop", str(directory))
    shutil.rmtree(directory, ignore_errors=True)
    pytest.fail(f"scripts/clamd.sh start failed:\n{output}")


def stop_clamd(clamd: RunningClamd) -> None:
    result = clamd_sh("stop", str(clamd.dir))
    assert result.returncode == 0, result.stdout + result.stderr
    shutil.rmtree(clamd.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def clamd(worker_id: str) -> Iterator[RunningClamd]:
    """This worker's clamd with the default limits (4000M)."""
    running = start_clamd(worker_id)
    yield running
    stop_clamd(running)


@pytest.fixture(scope="session")
def clamd_url(clamd: RunningClamd) -> str:
    return clamd.url


@pytest.fixture(scope="session")
def small_clamd(worker_id: str) -> Iterator[RunningClamd]:
    """A clamd whose StreamMaxLength, MaxScanSize and MaxFileSize are 1 MiB."""
    running = start_clamd(f"{worker_id}-small", CLAMD_STREAM_MAX="1M")
    yield running
    stop_clamd(running)


@pytest.fixture
def disposable_clamd(worker_id: str) -> Iterator[RunningClamd]:
    """A clamd of its own for one test, which may kill or stop it."""
    running = start_clamd(f"{worker_id}-disposable")
    yield running
    with contextlib.suppress(OSError, ValueError):
        os.kill(running.pid, signal.SIGCONT)  # in case the test stopped it
    stop_clamd(running)
