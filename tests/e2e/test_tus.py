"""tus 1.0.0 against real gateway processes, driven by the `tuspy` client and by hand."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import os
import socket
import threading
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest
from tusclient import client as tus_client

from tests.e2e.conftest import make_tenant, start_server

TUS = {"Tus-Resumable": "1.0.0"}
CHUNK = 256 * 1024


def auth(t) -> dict[str, str]:
    return {"Authorization": f"Bearer {t.access_token}"}


def meta(**values: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


def create(server, t, length: int, **extra_headers: str) -> str:
    r = httpx.post(
        f"{server.url}/v1/tus/",
        headers={
            **TUS,
            **auth(t),
            "Upload-Length": str(length),
            "Upload-Metadata": meta(filename="a.bin", filetype="application/octet-stream"),
            **extra_headers,
        },
    )
    assert r.status_code == 201, r.text
    assert r.headers["tus-resumable"] == "1.0.0"
    return server.url + r.headers["location"]


def patch(url: str, t, offset: int, body: bytes, **extra: str) -> httpx.Response:
    return httpx.patch(
        url,
        content=body,
        headers={
            **TUS,
            **auth(t),
            "Upload-Offset": str(offset),
            "Content-Type": "application/offset+octet-stream",
            **extra,
        },
    )


def head(url: str, t) -> httpx.Response:
    return httpx.head(url, headers={**TUS, **auth(t)})


def upload_of(server, t, url: str) -> dict:
    upload_id = url.rstrip("/").rsplit("/", 1)[1]
    r = httpx.get(f"{server.url}/v1/uploads/{upload_id}", headers=auth(t))
    assert r.status_code == 200, r.text
    return r.json()


def test_options_needs_no_credentials(live_server) -> None:
    r = httpx.options(f"{live_server.url}/v1/tus/")
    assert r.status_code == 204
    assert r.headers["tus-resumable"] == "1.0.0"
    assert r.headers["tus-version"] == "1.0.0"
    assert set(r.headers["tus-extension"].split(",")) >= {
        "creation",
        "creation-with-upload",
        "termination",
        "checksum",
        "expiration",
    }
    assert set(r.headers["tus-checksum-algorithm"].split(",")) == {"sha1", "sha256"}
    assert int(r.headers["tus-max-size"]) == 5 * 1024**3  # the global ceiling, unauthenticated


def test_tus_max_size_is_the_tenants_limit(live_server) -> None:
    t = make_tenant(live_server)
    httpx.put(f"{live_server.url}/v1/policy", json={"max_file_size": 123456}, headers=auth(t))
    r = httpx.options(f"{live_server.url}/v1/tus/", headers=auth(t))
    assert r.headers["tus-max-size"] == "123456"
    r = httpx.post(f"{live_server.url}/v1/tus/", headers={**TUS, **auth(t), "Upload-Length": "123457"})
    assert r.status_code == 413
    assert r.json()["code"] == "file_too_large"


def test_tuspy_upload_with_checksums_becomes_an_upload_with_the_same_id(live_server) -> None:
    t = make_tenant(live_server)
    data = os.urandom(3 * CHUNK + 1234)
    c = tus_client.TusClient(f"{live_server.url}/v1/tus/", headers=auth(t))
    up = c.uploader(
        file_stream=io.BytesIO(data),
        chunk_size=CHUNK,
        upload_checksum=True,
        metadata={"filename": "data.bin", "filetype": "application/octet-stream", "path": "in/x.bin"},
    )
    up.upload()
    assert up.offset == len(data)
    u = upload_of(live_server, t, up.url)
    assert u["id"] == up.url.rsplit("/", 1)[1]
    assert u["state"] in ("quarantined", "scanning", "clean", "rejected", "infected", "scan_failed")
    assert u["size"] == len(data)
    assert u["sha256"] == hashlib.sha256(data).hexdigest()
    assert u["filename"] == "data.bin"
    assert u["path"] == "in/x.bin"


def _cut_patch(url: str, t, offset: int, declared: int, sent: bytes) -> None:
    """A PATCH whose connection dies after `sent`, though it announced `declared` bytes."""
    parsed = urlparse(url)
    with socket.create_connection((parsed.hostname, parsed.port)) as s:
        head_lines = (
            f"PATCH {parsed.path} HTTP/1.1\r\nHost: {parsed.hostname}\r\nTus-Resumable: 1.0.0\r\n"
            f"Authorization: Bearer {t.access_token}\r\nUpload-Offset: {offset}\r\n"
            f"Content-Type: application/offset+octet-stream\r\nContent-Length: {declared}\r\n\r\n"
        )
        s.sendall(head_lines.encode() + sent)
        s.shutdown(socket.SHUT_WR)
        s.settimeout(5)
        with contextlib.suppress(OSError):
            s.recv(4096)


def test_resume_after_a_cut_connection(live_server) -> None:
    t = make_tenant(live_server)
    data = os.urandom(4 * CHUNK)
    c = tus_client.TusClient(f"{live_server.url}/v1/tus/", headers=auth(t))
    up = c.uploader(file_stream=io.BytesIO(data), chunk_size=CHUNK)
    up.upload_chunk()
    assert up.offset == CHUNK
    # The next chunk dies half way: what arrived is kept.
    _cut_patch(up.url, t, CHUNK, declared=2 * CHUNK, sent=data[CHUNK : CHUNK + CHUNK // 2])
    offset = int(head(up.url, t).headers["upload-offset"])
    assert CHUNK <= offset <= CHUNK + CHUNK // 2
    # A fresh client resumes from the server's offset and finishes.
    again = tus_client.TusClient(f"{live_server.url}/v1/tus/", headers=auth(t)).uploader(
        file_stream=io.BytesIO(data), chunk_size=CHUNK, url=up.url
    )
    again.upload()
    assert upload_of(live_server, t, up.url)["sha256"] == hashlib.sha256(data).hexdigest()


def test_creation_with_upload(live_server) -> None:
    t = make_tenant(live_server)
    data = b"hello tus"
    r = httpx.post(
        f"{live_server.url}/v1/tus/",
        content=data,
        headers={
            **TUS,
            **auth(t),
            "Upload-Length": str(len(data)),
            "Content-Type": "application/offset+octet-stream",
            "Upload-Metadata": meta(filename="hi.txt", filetype="text/plain"),
        },
    )
    assert r.status_code == 201, r.text
    assert r.headers["upload-offset"] == str(len(data))
    assert "upload-expires" in r.headers
    assert upload_of(live_server, t, live_server.url + r.headers["location"])["state"] != "receiving"


def test_wrong_offset_is_409_and_changes_nothing(live_server) -> None:
    t = make_tenant(live_server)
    url = create(live_server, t, 100)
    assert patch(url, t, 0, b"a" * 10).status_code == 204
    r = patch(url, t, 5, b"b" * 10)
    assert r.status_code == 409
    assert r.json()["code"] == "offset_mismatch"
    assert head(url, t).headers["upload-offset"] == "10"


@pytest.mark.parametrize("algorithm", ["sha1", "sha256"])
def test_checksums(live_server, algorithm: str) -> None:
    t = make_tenant(live_server)
    url = create(live_server, t, 20)
    body = b"x" * 10
    good = base64.b64encode(hashlib.new(algorithm, body).digest()).decode()
    bad = base64.b64encode(hashlib.new(algorithm, b"other").digest()).decode()
    r = patch(url, t, 0, body, **{"Upload-Checksum": f"{algorithm} {bad}"})
    assert r.status_code == 460
    assert r.json()["code"] == "checksum_mismatch"
    assert head(url, t).headers["upload-offset"] == "0"
    assert patch(url, t, 0, body, **{"Upload-Checksum": f"{algorithm} {good}"}).status_code == 204
    assert patch(url, t, 10, body, **{"Upload-Checksum": "md5 AAAA"}).status_code == 400


def test_termination(live_server) -> None:
    t = make_tenant(live_server)
    url = create(live_server, t, 100)
    patch(url, t, 0, b"z" * 10)
    r = httpx.delete(url, headers={**TUS, **auth(t)})
    assert r.status_code == 204
    assert head(url, t).status_code == 404
    assert patch(url, t, 10, b"z").status_code == 404


def test_protocol_errors(live_server) -> None:
    t = make_tenant(live_server)
    url = create(live_server, t, 10)
    r = httpx.patch(
        url,
        content=b"x",
        headers={**auth(t), "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"},
    )
    assert r.status_code == 412
    assert r.headers["tus-version"] == "1.0.0"
    r = httpx.patch(
        url,
        content=b"x",
        headers={**TUS, **auth(t), "Upload-Offset": "0", "Content-Type": "application/json"},
    )
    assert r.status_code == 415
    assert patch(url, t, 0, b"y" * 11).status_code == 413  # past Upload-Length
    assert head(url, t).headers["upload-offset"] == "0"
    r = httpx.post(f"{live_server.url}/v1/tus/", headers={**TUS, **auth(t)})
    assert r.status_code == 400  # no Upload-Length
    r = httpx.post(
        f"{live_server.url}/v1/tus/",
        headers={
            **TUS,
            **auth(t),
            "Upload-Length": "5",
            "Upload-Metadata": meta(filetype="application/x-sh"),
        },
    )
    assert r.status_code == 415
    for bad in ["filename !!!", "filename " + "A" * 9000]:
        r = httpx.post(
            f"{live_server.url}/v1/tus/",
            headers={**TUS, **auth(t), "Upload-Length": "5", "Upload-Metadata": bad},
        )
        assert r.status_code == 400
    assert httpx.post(f"{live_server.url}/v1/tus/", headers={**TUS, "Upload-Length": "5"}).status_code == 401


def test_other_tenant_and_other_user_see_nothing(live_server) -> None:
    a = make_tenant(live_server)
    b = make_tenant(live_server)
    url = create(live_server, b, 10)
    assert head(url, a).status_code == 404
    assert patch(url, a, 0, b"x").status_code == 404
    assert httpx.delete(url, headers={**TUS, **auth(a)}).status_code == 404
    assert head(url, b).status_code == 200


def test_concurrent_patches_are_serialized(live_server) -> None:
    t = make_tenant(live_server)
    url = create(live_server, t, 2 * 1024 * 1024)
    body = os.urandom(1024 * 1024)
    results: list[int] = []

    def send() -> None:
        results.append(patch(url, t, 0, body).status_code)

    threads = [threading.Thread(target=send) for _ in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sorted(results).count(204) == 1, results
    assert all(code in (204, 409, 423) for code in results)
    assert head(url, t).headers["upload-offset"] == str(len(body))


def test_chunks_alternate_between_two_gateway_processes(live_server, tmp_path) -> None:
    """No state in a gateway: a second process on the same database, Redis and store serves every other chunk."""
    second_env = dict(live_server.env)
    second_env["FILEGATE_PORT"] = str(_free_port())
    proc = start_server(second_env, tmp_path / "second.log")
    try:
        second = f"http://127.0.0.1:{second_env['FILEGATE_PORT']}"
        t = make_tenant(live_server)
        data = os.urandom(6 * CHUNK)
        url = create(live_server, t, len(data))
        path = urlparse(url).path
        for i in range(6):
            base = live_server.url if i % 2 == 0 else second
            r = patch(base + path, t, i * CHUNK, data[i * CHUNK : (i + 1) * CHUNK])
            assert r.status_code == 204, (i, r.text)
            assert head((second if i % 2 == 0 else live_server.url) + path, t).headers[
                "upload-offset"
            ] == str((i + 1) * CHUNK)
        assert upload_of(live_server, t, url)["sha256"] == hashlib.sha256(data).hexdigest()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stored(server, t, url: str):
    upload_id = url.rstrip("/").rsplit("/", 1)[1]
    return Path(server.env["FILEGATE_DATA_DIR"]) / "quarantine" / t.id / upload_id


def test_database_ahead_of_the_stored_bytes(live_server) -> None:
    """PATCHes are synced only at the end: a host crash can leave the database counting bytes the disk lost.
    The client then resumes where the bytes end, and the upload completes whole, never with a hole."""
    t = make_tenant(live_server)
    data = os.urandom(4 * CHUNK)
    url = create(live_server, t, len(data))
    for i in range(3):
        assert patch(url, t, i * CHUNK, data[i * CHUNK : (i + 1) * CHUNK]).status_code == 204
    stored = _stored(live_server, t, url)
    lost = CHUNK + CHUNK // 2
    os.truncate(stored, lost)  # what survived the crash; the database says 3 * CHUNK
    assert head(url, t).headers["upload-offset"] == str(lost)
    r = patch(url, t, 3 * CHUNK, data[3 * CHUNK :])
    assert r.status_code == 409, r.text
    assert r.json()["code"] == "offset_mismatch"
    assert upload_of(live_server, t, url)["state"] == "receiving"
    assert stored.stat().st_size == lost
    r = patch(url, t, lost, data[lost:])
    assert r.status_code == 204, r.text
    assert r.headers["upload-offset"] == str(len(data))
    upload = upload_of(live_server, t, url)
    assert upload["state"] != "receiving"
    assert upload["size"] == len(data)
    assert upload["sha256"] == hashlib.sha256(data).hexdigest()


def test_all_stored_bytes_lost(live_server) -> None:
    t = make_tenant(live_server)
    data = os.urandom(2 * CHUNK)
    url = create(live_server, t, len(data))
    assert patch(url, t, 0, data[:CHUNK]).status_code == 204
    _stored(live_server, t, url).unlink()
    assert head(url, t).headers["upload-offset"] == "0"
    assert patch(url, t, CHUNK, data[CHUNK:]).status_code == 409
    assert patch(url, t, 0, data).status_code == 204
    assert upload_of(live_server, t, url)["sha256"] == hashlib.sha256(data).hexdigest()


def test_bytes_past_the_offset_are_replaced(live_server) -> None:
    """A PATCH that wrote and died before the database moved: the retry at the database's offset wins."""
    t = make_tenant(live_server)
    data = os.urandom(2 * CHUNK)
    url = create(live_server, t, len(data))
    assert patch(url, t, 0, data[:CHUNK]).status_code == 204
    with _stored(live_server, t, url).open("ab") as f:
        f.write(b"\0" * (CHUNK + 7))
    assert head(url, t).headers["upload-offset"] == str(CHUNK)
    assert patch(url, t, CHUNK, data[CHUNK:]).status_code == 204
    assert upload_of(live_server, t, url)["sha256"] == hashlib.sha256(data).hexdigest()
