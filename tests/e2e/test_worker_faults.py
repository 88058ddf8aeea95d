"""A worker killed with SIGKILL in the middle of a scan: nothing is released, nothing is lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.e2e.conftest import make_tenant


def _worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "worker"], env=env, stdout=out, stderr=subprocess.STDOUT
        )


def _state(url: str, token: str, upload_id: str) -> str:
    r = httpx.get(f"{url}/v1/uploads/{upload_id}", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    return str(r.json()["state"])


def _wait_for(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_sigkill_mid_scan_then_restart_reaches_a_verdict(
    live_server, disposable_clamd, tmp_path: Path
) -> None:
    # A short job timeout: arq lets another worker take over a killed worker's job after it + 10 s.
    env = {**live_server.env, "FILEGATE_CLAMD_URL": disposable_clamd.url, "FILEGATE_SCAN_JOB_TIMEOUT": "5"}
    t = make_tenant(live_server)
    auth = {"Authorization": f"Bearer {t.access_token}"}
    assert (
        httpx.put(f"{live_server.url}/v1/policy", json={"allowed_types": ["*/*"]}, headers=auth).status_code
        == 200
    )
    up = httpx.post(
        f"{live_server.url}/v1/uploads",
        content=os.urandom(8 * 1024 * 1024),
        timeout=60,
        headers={
            **auth,
            "Content-Type": "application/octet-stream",
            "Content-Disposition": 'attachment; filename="big.bin"',
        },
    )
    assert up.status_code == 202, up.text
    upload_id = up.json()["id"]

    # Freeze clamd: the scan that starts now hangs mid-stream, as a slow scan would.
    os.kill(disposable_clamd.pid, signal.SIGSTOP)
    log = tmp_path / "worker.log"
    first = _worker(env, log)
    try:
        assert _wait_for(lambda: _state(live_server.url, t.access_token, upload_id) == "scanning", 30), (
            log.read_text()
        )
        time.sleep(0.5)
        first.kill()  # SIGKILL: no cleanup; the job stays "in progress" in Redis until its lease runs out
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            first.kill()
        os.kill(disposable_clamd.pid, signal.SIGCONT)
    assert _state(live_server.url, t.access_token, upload_id) == "scanning"  # fail closed: not released

    second = _worker(env, log)
    try:
        assert _wait_for(lambda: _state(live_server.url, t.access_token, upload_id) == "clean", 90), (
            log.read_text()
        )
    finally:
        second.terminate()
        second.wait(timeout=15)
    events = httpx.get(
        f"{live_server.url}/v1/audit", params={"action": "upload.verdict"}, headers=auth
    ).json()
    assert len(events["items"]) == 1
