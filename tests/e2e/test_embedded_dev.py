"""The README's run command: `filegate dev` on embedded defaults, then tenant create, login and /v1/me."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from scanning import samples
from tests.e2e.conftest import PASSWORD, cli_tenant_create


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_filegate_dev_runs_everything_embedded(tmp_path: Path) -> None:
    # Nothing configured but a data directory and a port: no PostgreSQL or Redis URL at all.
    env = {k: v for k, v in os.environ.items() if not k.startswith("FILEGATE_")}
    env.update(FILEGATE_DATA_DIR=str(tmp_path / "var"), FILEGATE_PORT=str(_port()))
    url = f"http://127.0.0.1:{env['FILEGATE_PORT']}"
    log = (tmp_path / "dev.log").open("wb")
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
        assert ready is not None and ready.status_code == 200, (tmp_path / "dev.log").read_text()[-3000:]
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
        assert state == "clean"
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
    # Ctrl-C stops the private servers too.
    assert not (tmp_path / "var" / "embedded.json").exists()
    assert (
        subprocess.run(
            ["scripts/clamd.sh", "status", str(tmp_path / "var" / "clamd")], capture_output=True, check=False
        ).returncode
        == 3
    )  # stopped
    postmaster = tmp_path / "var" / "postgres" / "postmaster.pid"
    for _ in range(50):
        if not postmaster.exists():
            break
        time.sleep(0.2)
    assert not postmaster.exists()
