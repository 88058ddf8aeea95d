"""tus 1.0.0 against a real gateway process, driven by the reference JavaScript client (tus-js-client, Node).

tests/e2e/js/tus_upload.mjs wraps tus-js-client's Node API; scripts/npm.sh installs it from the committed
package-lock.json (once per session, a no-op when node_modules is current). Skipped only when `node` is not
on PATH.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import LiveServer, Tenant, make_tenant

ROOT = Path(__file__).resolve().parents[2]
JS_DIR = ROOT / "tests" / "e2e" / "js"
SCRIPT = JS_DIR / "tus_upload.mjs"
MIB = 1024 * 1024
TUS = {"Tus-Resumable": "1.0.0"}

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        shutil.which("node") is None,
        reason="node is not on PATH: the tus-js-client tests need Node.js >= 18 (and npm, see scripts/npm.sh)",
    ),
]


@pytest.fixture(scope="session")
def tus_js() -> Path:
    """tus-js-client installed in tests/e2e/js (idempotent, serialised across xdist workers)."""
    r = subprocess.run(
        [str(ROOT / "scripts" / "npm.sh"), str(JS_DIR)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, f"scripts/npm.sh failed:\n{r.stdout}\n{r.stderr}"
    assert (JS_DIR / "node_modules" / "tus-js-client" / "package.json").is_file()
    return SCRIPT


def auth(t: Tenant) -> dict[str, str]:
    return {"Authorization": f"Bearer {t.access_token}"}


def node_upload(
    server: LiveServer, t: Tenant, script: Path, file: Path, *args: str, endpoint: bool = True
) -> dict[str, Any]:
    """Run tus_upload.mjs; returns its JSON line. The token goes by environment, not argv."""
    cmd = ["node", str(script), "--file", str(file), "--no-retry", *args]
    if endpoint:
        cmd += ["--endpoint", f"{server.url}/v1/tus"]
    r = subprocess.run(
        cmd,
        env={**os.environ, "FILEGATE_TOKEN": t.access_token},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, (
        f"tus_upload.mjs exited {r.returncode}\nstderr: {r.stderr}\nstdout: {r.stdout}\n"
        f"gateway log (tail): {server.log_text()[-3000:]}"
    )
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1, r.stdout
    out: dict[str, Any] = json.loads(lines[0])
    return out


def random_file(tmp_path: Path, size: int, name: str = "data.bin") -> tuple[Path, bytes]:
    data = os.urandom(size)
    path = tmp_path / name
    path.write_bytes(data)
    return path, data


def upload_id(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[1]


def get_upload(server: LiveServer, t: Tenant, url: str) -> httpx.Response:
    return httpx.get(f"{server.url}/v1/uploads/{upload_id(url)}", headers=auth(t))


def assert_upload_matches(
    server: LiveServer, t: Tenant, url: str, data: bytes, filename: str
) -> dict[str, Any]:
    r = get_upload(server, t, url)
    assert r.status_code == 200, r.text
    u: dict[str, Any] = r.json()
    assert u["id"] == upload_id(url)
    assert u["size"] == len(data)
    assert u["sha256"] == hashlib.sha256(data).hexdigest()
    assert u["filename"] == filename
    return u


def methods(out: dict[str, Any]) -> list[tuple[str, int]]:
    return [(r["method"], r["status"]) for r in out["requests"]]


def test_chunked_upload_of_3_mib_becomes_an_upload_with_its_sha256(
    live_server: LiveServer, tus_js: Path, tmp_path: Path
) -> None:
    t = make_tenant(live_server)
    path, data = random_file(tmp_path, 3 * MIB + 12345)
    out = node_upload(live_server, t, tus_js, path, "--chunk-size", str(MIB), "--meta", "path=js/chunked.bin")
    assert out["bytes"] == out["total"] == len(data)
    assert out["aborted"] is False
    assert out["url"].startswith(f"{live_server.url}/v1/tus/")  # relative Location resolved
    patches = math.ceil(len(data) / MIB)
    assert methods(out) == [("POST", 201)] + [("PATCH", 204)] * patches
    assert [r["offset"] for r in out["requests"]] == [
        0,
        *(min((i + 1) * MIB, len(data)) for i in range(patches)),
    ]
    u = assert_upload_matches(live_server, t, out["url"], data, "data.bin")
    assert u["path"] == "js/chunked.bin"


def test_single_request_upload_without_chunk_size(
    live_server: LiveServer, tus_js: Path, tmp_path: Path
) -> None:
    t = make_tenant(live_server)
    path, data = random_file(tmp_path, 70_000, "small.bin")
    out = node_upload(live_server, t, tus_js, path)
    assert out["bytes"] == len(data)
    assert methods(out) == [("POST", 201), ("PATCH", 204)]
    assert_upload_matches(live_server, t, out["url"], data, "small.bin")


def test_single_request_upload_from_a_buffer(live_server: LiveServer, tus_js: Path, tmp_path: Path) -> None:
    t = make_tenant(live_server)
    path, data = random_file(tmp_path, 200_000, "buffer.bin")
    out = node_upload(live_server, t, tus_js, path, "--source", "buffer", "--meta", "filename=renamed.bin")
    assert methods(out) == [("POST", 201), ("PATCH", 204)]
    assert_upload_matches(live_server, t, out["url"], data, "renamed.bin")


def test_creation_with_upload_sends_the_first_chunk_with_the_post(
    live_server: LiveServer, tus_js: Path, tmp_path: Path
) -> None:
    t = make_tenant(live_server)
    path, data = random_file(tmp_path, 2 * MIB + 1)
    out = node_upload(live_server, t, tus_js, path, "--chunk-size", str(MIB), "--upload-during-creation")
    assert methods(out) == [("POST", 201), ("PATCH", 204), ("PATCH", 204)]
    assert [r["offset"] for r in out["requests"]] == [MIB, 2 * MIB, len(data)]
    assert_upload_matches(live_server, t, out["url"], data, "data.bin")


def test_aborted_upload_resumes_from_the_servers_offset(
    live_server: LiveServer, tus_js: Path, tmp_path: Path
) -> None:
    t = make_tenant(live_server)
    chunk = 512 * 1024
    path, data = random_file(tmp_path, 3 * chunk + 777, "resume.bin")

    first = node_upload(
        live_server, t, tus_js, path, "--chunk-size", str(chunk), "--stop-after-bytes", str(chunk)
    )
    assert first["aborted"] is True
    assert first["bytes"] == chunk
    assert methods(first) == [("POST", 201), ("PATCH", 204)]
    url = first["url"]

    # The server holds exactly the first chunk; the upload is still receiving.
    r = httpx.head(url, headers={**TUS, **auth(t)})
    assert r.status_code == 200
    assert r.headers["upload-offset"] == str(chunk)
    assert r.headers["upload-length"] == str(len(data))
    r = get_upload(live_server, t, url)
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "receiving"

    # Resume with only the upload URL: no endpoint, so a failed HEAD cannot turn into a new upload.
    second = node_upload(
        live_server, t, tus_js, path, "--chunk-size", str(chunk), "--resume-url", url, endpoint=False
    )
    assert second["aborted"] is False
    assert second["url"] == url
    assert second["resumed_from"] == chunk
    assert second["bytes"] == len(data)
    assert methods(second) == [("HEAD", 200)] + [("PATCH", 204)] * 3
    assert [r["offset"] for r in second["requests"]] == [chunk, 2 * chunk, 3 * chunk, len(data)]
    assert assert_upload_matches(live_server, t, url, data, "resume.bin")["state"] != "receiving"

    # Resuming a finished upload: HEAD says offset == length and tus-js-client succeeds without a PATCH.
    third = node_upload(live_server, t, tus_js, path, "--resume-url", url, endpoint=False)
    assert third["url"] == url
    assert methods(third) == [("HEAD", 200)]
    assert third["resumed_from"] == len(data)
