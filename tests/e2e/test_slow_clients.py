"""Slow and vanishing clients against a real `filegate serve`, over raw sockets.

A client that declares a body and then stops sending, or holds an idle keep-alive connection, must not
hold a connection (and what its handler holds) for longer than the configured timeouts; a cut upload
leaves nothing behind; a client that vanishes mid-body is one quiet log line, not an error with a trace.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest

from tests.conftest import TestDatabase
from tests.e2e.conftest import LiveServer, Tenant, make_tenant, server_env, start_server, stop_all

IDLE = 2  # FILEGATE_BODY_IDLE_TIMEOUT and FILEGATE_HEADER_READ_TIMEOUT of this module's server
SLACK = 4


@pytest.fixture(scope="module")
def impatient_server(test_db: TestDatabase, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    data_dir = tmp_path_factory.mktemp("impatient")
    env = server_env(
        test_db,
        data_dir,
        FILEGATE_BODY_IDLE_TIMEOUT=str(IDLE),
        FILEGATE_HEADER_READ_TIMEOUT=str(IDLE),
        FILEGATE_LOGIN_IP_LIMIT="1000",
    )
    log_path = data_dir / "gateway.log"
    proc = start_server(env, log_path)
    try:
        yield LiveServer(url=f"http://127.0.0.1:{env['FILEGATE_PORT']}", log_path=log_path, env=env)
    finally:
        stop_all([proc])


def _connect(server: LiveServer) -> socket.socket:
    u = urlparse(server.url)
    s = socket.create_connection((u.hostname or "127.0.0.1", u.port or 80), timeout=IDLE + SLACK + 5)
    return s


def _request_head(method: str, path: str, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: filegate.test", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _read_until_closed(s: socket.socket) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and how long that took."""
    started = time.monotonic()
    received = b""
    with contextlib.suppress(TimeoutError, ConnectionResetError):
        while chunk := s.recv(65536):
            received += chunk
    return received, time.monotonic() - started


def _status(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1]) if raw.startswith(b"HTTP/1.1 ") else 0


def _quarantine_files(server: LiveServer) -> list[Path]:
    root = Path(server.env["FILEGATE_DATA_DIR"]) / "quarantine"
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def _uploads(server: LiveServer, t: Tenant) -> list[dict[str, object]]:
    r = httpx.get(f"{server.url}/v1/uploads", headers={"Authorization": f"Bearer {t.access_token}"})
    assert r.status_code == 200, r.text
    items: list[dict[str, object]] = r.json()["items"]
    return items


def test_a_stalled_upload_body_is_cut_and_leaves_nothing_behind(impatient_server: LiveServer) -> None:
    t = make_tenant(impatient_server)
    before = set(_quarantine_files(impatient_server))
    with _connect(impatient_server) as s:
        s.sendall(
            _request_head(
                "POST",
                "/v1/uploads",
                {
                    "Authorization": f"Bearer {t.access_token}",
                    "Content-Type": "text/plain",
                    "Content-Disposition": 'attachment; filename="slow.txt"',
                    "Content-Length": str(10 * 1024 * 1024),
                },
            )
            + b"x" * 65536
        )
        raw, took = _read_until_closed(s)
    assert _status(raw) == 408, raw[:300]
    assert b'"code":"request_timeout"' in raw
    assert took < IDLE + SLACK, took
    time.sleep(0.5)
    assert _uploads(impatient_server, t) == []
    assert set(_quarantine_files(impatient_server)) == before


def test_a_stalled_json_body_is_cut(impatient_server: LiveServer) -> None:
    with _connect(impatient_server) as s:
        s.sendall(
            _request_head(
                "POST", "/v1/auth/login", {"Content-Type": "application/json", "Content-Length": "200"}
            )
            + b"{"
        )
        raw, took = _read_until_closed(s)
    assert _status(raw) == 408, raw[:300]
    assert took < IDLE + SLACK, took


def test_a_stalled_tus_patch_keeps_what_arrived_and_frees_the_connection(
    impatient_server: LiveServer,
) -> None:
    t = make_tenant(impatient_server)
    auth = {"Authorization": f"Bearer {t.access_token}", "Tus-Resumable": "1.0.0"}
    r = httpx.post(f"{impatient_server.url}/v1/tus/", headers={**auth, "Upload-Length": "100000"})
    assert r.status_code == 201, r.text
    location = r.headers["location"]
    with _connect(impatient_server) as s:
        s.sendall(
            _request_head(
                "PATCH",
                location,
                {
                    **auth,
                    "Upload-Offset": "0",
                    "Content-Type": "application/offset+octet-stream",
                    "Content-Length": "100000",
                },
            )
            + b"y" * 1000
        )
        raw, took = _read_until_closed(s)
    assert took < IDLE + SLACK, took
    assert _status(raw) in (204, 408), raw[:300]
    head = httpx.head(f"{impatient_server.url}{location}", headers=auth)
    assert head.headers["upload-offset"] == "1000"


def test_an_idle_keep_alive_connection_is_closed(impatient_server: LiveServer) -> None:
    with _connect(impatient_server) as s:
        s.sendall(_request_head("GET", "/health/live", {}))
        first = s.recv(65536)
        assert _status(first) == 200, first
        raw, took = _read_until_closed(s)
    assert raw == b""
    assert took < IDLE + SLACK, took


def test_a_connection_that_never_finishes_its_headers_is_closed(impatient_server: LiveServer) -> None:
    with _connect(impatient_server) as s:
        s.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\n")
        raw, took = _read_until_closed(s)
    assert took < IDLE + SLACK, took
    assert _status(raw) in (0, 408), raw[:200]


def test_a_client_that_vanishes_mid_body_is_a_quiet_log_line(impatient_server: LiveServer) -> None:
    t = make_tenant(impatient_server)
    for path, content_type in (("/v1/users", "application/json"), ("/v1/uploads", "text/plain")):
        with _connect(impatient_server) as s:
            s.sendall(
                _request_head(
                    "POST",
                    path,
                    {
                        "Authorization": f"Bearer {t.access_token}",
                        "Content-Type": content_type,
                        "Content-Disposition": 'attachment; filename="gone.txt"',
                        "Content-Length": "100000",
                    },
                )
                + b'{"email": "a'
            )
            time.sleep(0.3)
        # closed by the client here, with most of the declared body never sent
    time.sleep(1.5)
    lines = [json.loads(line) for line in impatient_server.log_text().splitlines() if line.startswith("{")]
    disconnects = [line for line in lines if line.get("event") == "http.client_disconnected"]
    assert len(disconnects) >= 2, [line.get("event") for line in lines][-20:]
    assert all(line["level"] == "info" for line in disconnects)
    errors = [line for line in lines if line.get("level") in ("error", "critical")]
    assert errors == [], errors[:3]
    assert "Traceback" not in impatient_server.log_text()


def test_many_stalled_bodies_neither_stall_the_process_nor_outlive_the_timeout(
    impatient_server: LiveServer,
) -> None:
    stalled = []
    try:
        for _ in range(200):
            s = _connect(impatient_server)
            s.sendall(
                _request_head(
                    "POST", "/v1/auth/login", {"Content-Type": "application/json", "Content-Length": "100"}
                )
                + b"{"
            )
            stalled.append(s)
        started = time.monotonic()
        assert httpx.get(f"{impatient_server.url}/health/live", timeout=5).status_code == 200
        assert time.monotonic() - started < 2
        time.sleep(IDLE + 1)
        for s in stalled:
            s.settimeout(SLACK)
            raw, _ = _read_until_closed(s)
            assert _status(raw) == 408, raw[:200]
    finally:
        for s in stalled:
            s.close()


def test_a_trickled_upload_body_is_cut_and_leaves_nothing_behind(impatient_server: LiveServer) -> None:
    """A byte now and then never trips the idle timeout; the minimum average rate cuts it."""
    t = make_tenant(impatient_server)
    before = set(_quarantine_files(impatient_server))
    started = time.monotonic()
    with _connect(impatient_server) as s:
        s.sendall(
            _request_head(
                "POST",
                "/v1/uploads",
                {
                    "Authorization": f"Bearer {t.access_token}",
                    "Content-Type": "text/plain",
                    "Content-Disposition": 'attachment; filename="trickle.txt"',
                    "Content-Length": "100000",
                },
            )
        )
        s.settimeout(0.01)
        raw = b""
        while time.monotonic() - started < IDLE * 4:
            try:
                s.sendall(b"z")
            except OSError:
                break
            with contextlib.suppress(TimeoutError):
                raw += s.recv(65536)
            if raw:
                break
            time.sleep(IDLE / 4)
        s.settimeout(SLACK)
        more, _ = _read_until_closed(s)
        raw += more
    assert _status(raw) == 408, raw[:300]
    assert b"slower than" in raw
    assert time.monotonic() - started < IDLE * 3
    time.sleep(0.5)
    assert _uploads(impatient_server, t) == []
    assert set(_quarantine_files(impatient_server)) == before
