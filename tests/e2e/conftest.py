"""A real gateway process (`filegate serve`, granian) per xdist worker, talked to over TCP."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import OPERATOR_TOKEN, REDIS, TestDatabase

PASSWORD = "Tr0ub4dor&3-horse-staple"


@dataclass
class LiveServer:
    url: str
    log_path: Path
    env: dict[str, str]

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_env(test_db: TestDatabase, data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FILEGATE_")}
    env.update(
        FILEGATE_DATABASE_URL=test_db.app_url,
        FILEGATE_MIGRATE_DATABASE_URL=test_db.owner_url,
        FILEGATE_REDIS_URL=REDIS,
        FILEGATE_REDIS_KEY_PREFIX=f"fge2e:{uuid.uuid4().hex}:",
        FILEGATE_DATA_DIR=str(data_dir),
        FILEGATE_OPERATOR_TOKEN=OPERATOR_TOKEN,
        FILEGATE_HOST="127.0.0.1",
        FILEGATE_PORT=str(_free_port()),
        FILEGATE_DATABASE_POOL_SIZE="4",
    )
    env.update(extra)
    return env


def start_server(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "serve"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{env['FILEGATE_PORT']}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gateway exited: {log_path.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/health/live", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("gateway did not come up in 30 s")


def stop_all(procs: Iterable[subprocess.Popen[bytes]], timeout: float = 15) -> None:
    """SIGTERM each process, then wait for all (granian passes SIGTERM on to its workers; SIGKILL would
    orphan them); one that does not stop in `timeout` seconds is killed."""
    procs = list(procs)
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextmanager
def running_gateway(test_db: TestDatabase, data_dir: Path, **extra: str) -> Iterator[LiveServer]:
    """A gateway process of its own with these extra settings, stopped (and waited for) afterwards."""
    env = server_env(test_db, data_dir, **extra)
    log_path = data_dir / "gateway.log"
    proc = start_server(env, log_path)
    try:
        yield LiveServer(url=f"http://127.0.0.1:{env['FILEGATE_PORT']}", log_path=log_path, env=env)
    finally:
        stop_all([proc])


@pytest.fixture(scope="session")
def live_server(test_db: TestDatabase, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    data_dir = tmp_path_factory.mktemp("live")
    env = server_env(test_db, data_dir, FILEGATE_LOGIN_IP_LIMIT="1000", FILEGATE_LOGIN_ACCOUNT_LIMIT="1000")
    log_path = data_dir / "gateway.log"
    proc = start_server(env, log_path)
    try:
        yield LiveServer(url=f"http://127.0.0.1:{env['FILEGATE_PORT']}", log_path=log_path, env=env)
    finally:
        stop_all([proc])


@dataclass
class Tenant:
    id: str
    slug: str
    admin_email: str
    access_token: str
    refresh_token: str


def make_tenant(server: LiveServer) -> Tenant:
    slug = f"e2e-{uuid.uuid4().hex[:10]}"
    email = f"admin@{slug}.test"
    r = httpx.post(
        f"{server.url}/v1/tenants",
        headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"},
        json={"name": "E2E", "slug": slug, "admin_email": email, "admin_password": PASSWORD},
    )
    assert r.status_code == 201, r.text
    login = httpx.post(
        f"{server.url}/v1/auth/login", json={"tenant": slug, "email": email, "password": PASSWORD}
    )
    assert login.status_code == 200, login.text
    return Tenant(r.json()["id"], slug, email, login.json()["access_token"], login.json()["refresh_token"])


def cli_tenant_create(
    env: dict[str, str], *, name: str, slug: str, email: str
) -> subprocess.CompletedProcess[str]:
    """`filegate tenant create ... --json` as an operator types it."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "tenant",
            "create",
            "--name",
            name,
            "--slug",
            slug,
            "--admin-email",
            email,
            "--admin-password",
            PASSWORD,
            "--json",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="session")
def browser_ready() -> Path:
    """Chromium, playwright-core and the upload page's bundle, installed and built (idempotent)."""
    from tests.e2e.browsing import ensure_browser

    return ensure_browser()
