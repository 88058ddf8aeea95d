"""The S3 quarantine against a real S3 server (SeaweedFS, scripts/s3.sh): the store alone, then the whole
upload path (ingest, tus, the worker's scan, download, deletion) with the gateway configured for it."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import stat
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from gateway.settings import Settings
from gateway.uploads.quarantine import (
    LimitExceeded,
    LocalQuarantine,
    local_copy,
    quarantine_key,
    quarantine_store,
)
from gateway.uploads.s3_quarantine import PART_SIZE, S3Quarantine
from scanning import samples
from tests.factories import create_tenant
from tests.s3 import Bucket

MiB = 1024 * 1024
PREFIX = "fg/quarantine"
# Never spelled out in one piece (see tests/integration/scanning/test_clamav.py).
EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


async def chunked(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def failing(data: bytes, exc: BaseException) -> AsyncIterator[bytes]:
    async for chunk in chunked(data):
        yield chunk
    raise exc


async def read_all(store: S3Quarantine, key: str) -> bytes:
    return b"".join([c async for c in store.read(key)])


@pytest.fixture
def store(s3_bucket: Bucket) -> S3Quarantine:
    return S3Quarantine(s3_bucket.name, PREFIX, client=s3_bucket.client)


def new_key() -> str:
    return quarantine_key(uuid.uuid4(), uuid.uuid4())


# --- the store alone ---------------------------------------------------------------------------------


async def test_write_read_size_sha256_delete(store: S3Quarantine, s3_bucket: Bucket) -> None:
    key = new_key()
    data = b"hello quarantine" * 1000
    written, digest = await store.write(key, chunked(data), limit=len(data))
    assert (written, digest) == (len(data), hashlib.sha256(data).hexdigest())
    assert s3_bucket.object_keys() == [f"{PREFIX}/{key}"]
    assert await read_all(store, key) == data
    assert await store.size(key) == len(data)
    assert await store.sha256(key) == digest
    await store.seal(key)  # nothing to do: no parts
    assert s3_bucket.object_keys() == [f"{PREFIX}/{key}"]
    await store.delete(key)
    assert s3_bucket.object_keys() == []
    assert await store.size(key) == 0
    await store.delete(key)  # idempotent
    with pytest.raises(FileNotFoundError):
        await read_all(store, key)


async def test_keys_are_uuids_under_the_prefix(store: S3Quarantine) -> None:
    tenant, upload = uuid.uuid4(), uuid.uuid4()
    assert store.object_key(f"{tenant}/{upload}") == f"{PREFIX}/{tenant}/{upload}"
    for bad in ("../x", f"{tenant}/../{upload}", f"{tenant}", f"{tenant}/x", f"x/{upload}", ""):
        with pytest.raises(ValueError, match=r"UUID|key must be"):
            store.object_key(bad)
    assert (
        S3Quarantine("bucket", "", client=object()).object_key(f"{tenant}/{upload}") == f"{tenant}/{upload}"
    )


async def test_large_body_goes_up_in_parts(store: S3Quarantine, s3_bucket: Bucket) -> None:
    key = new_key()
    data = os.urandom(2 * PART_SIZE + 12345)
    written, digest = await store.write(key, chunked(data, 1000 * 1000), limit=len(data))
    assert (written, digest) == (len(data), hashlib.sha256(data).hexdigest())
    head = s3_bucket.client.head_object(Bucket=s3_bucket.name, Key=f"{PREFIX}/{key}")
    assert head["ContentLength"] == len(data)
    assert await read_all(store, key) == data
    assert s3_bucket.pending_uploads() == []


@pytest.mark.parametrize("size", [1000, PART_SIZE + 1000, 2 * PART_SIZE + 1])
async def test_limit_exceeded_leaves_nothing(store: S3Quarantine, s3_bucket: Bucket, size: int) -> None:
    key = new_key()
    with pytest.raises(LimitExceeded):
        await store.write(key, chunked(os.urandom(size), 256 * 1024), limit=size - 1)
    assert s3_bucket.object_keys() == []
    assert s3_bucket.pending_uploads() == []


@pytest.mark.parametrize("size", [1000, PART_SIZE + 1000])
async def test_cut_body_and_failed_verify_leave_nothing(
    store: S3Quarantine, s3_bucket: Bucket, size: int
) -> None:
    data = os.urandom(size)
    with pytest.raises(ConnectionResetError):
        await store.write(new_key(), failing(data, ConnectionResetError()), limit=10 * size)

    def verify() -> None:
        raise ValueError("checksum mismatch")

    with pytest.raises(ValueError, match="checksum"):
        await store.write(new_key(), chunked(data), limit=size, verify=verify)
    # ... also at an offset (a tus PATCH with Upload-Checksum)
    key = new_key()
    await store.write(key, chunked(b"base"), limit=10 * size)
    with pytest.raises(ValueError, match="checksum"):
        await store.write(key, chunked(data), limit=10 * size, offset=4, verify=verify)
    assert s3_bucket.object_keys() == [f"{PREFIX}/{key}"]
    assert s3_bucket.pending_uploads() == []


async def test_offset_writes_are_parts_until_sealed(store: S3Quarantine, s3_bucket: Bucket) -> None:
    key = new_key()
    obj = f"{PREFIX}/{key}"
    # A base over one part (copied server-side), a small part, a part over one part (streamed behind the
    # small one's bytes), and an empty PATCH that leaves nothing.
    pieces = [os.urandom(PART_SIZE + 3 * MiB), os.urandom(MiB + 7), os.urandom(PART_SIZE + 5)]
    data = b"".join(pieces)
    offset = 0
    for piece in pieces:
        written, digest = await store.write(key, chunked(piece, MiB), limit=len(data), offset=offset)
        assert written == len(piece)
        assert (digest is not None) == (offset == 0)
        offset += written
    assert await store.write(key, chunked(b""), limit=len(data), offset=offset) == (0, None)
    assert sorted(s3_bucket.object_keys()) == [
        obj,
        f"{obj}.part/{len(pieces[0]):020d}",
        f"{obj}.part/{len(pieces[0]) + len(pieces[1]):020d}",
    ]
    assert await store.size(key) == len(data)
    assert await read_all(store, key) == data
    assert await store.sha256(key) == hashlib.sha256(data).hexdigest()

    await store.seal(key)
    assert s3_bucket.object_keys() == [obj]
    assert s3_bucket.pending_uploads() == []
    assert await store.size(key) == len(data)
    assert await store.sha256(key) == hashlib.sha256(data).hexdigest()
    await store.delete(key)
    assert s3_bucket.object_keys() == []


async def test_small_parts_seal_into_one_object(store: S3Quarantine, s3_bucket: Bucket) -> None:
    key = new_key()
    pieces = [b"a" * 10, b"b" * 20, b"c" * 30]
    offset = 0
    for piece in pieces:
        offset += (await store.write(key, chunked(piece), limit=60, offset=offset))[0]
    with pytest.raises(LimitExceeded):
        await store.write(key, chunked(b"d"), limit=60, offset=60)
    assert len(s3_bucket.object_keys()) == 3
    await store.seal(key)
    assert s3_bucket.object_keys() == [f"{PREFIX}/{key}"]
    assert await read_all(store, key) == b"".join(pieces)


async def test_empty_upload_seals_into_an_empty_object(store: S3Quarantine, s3_bucket: Bucket) -> None:
    key = new_key()
    await store.seal(key)
    assert await store.sha256(key) == hashlib.sha256(b"").hexdigest()


async def test_local_seal_is_a_no_op_but_for_an_empty_upload(tmp_path: Path) -> None:
    store = LocalQuarantine(tmp_path / "q")
    key = new_key()
    await store.seal(key)
    assert await store.sha256(key) == hashlib.sha256(b"").hexdigest()
    assert stat.S_IMODE(store.local_path(key).stat().st_mode) == 0o600
    await store.write(key, chunked(b"abc"), limit=10)
    await store.write(key, chunked(b"def"), limit=10, offset=3)
    await store.seal(key)
    assert store.local_path(key).read_bytes() == b"abcdef"
    async with local_copy(store, key, tmp_path / "scratch") as path:
        assert path == store.local_path(key)
    assert not (tmp_path / "scratch").exists()


async def test_a_retried_offset_replaces_the_later_parts(store: S3Quarantine, s3_bucket: Bucket) -> None:
    """A PATCH written to S3 whose database update never happened: the retry at the database's offset wins."""
    key = new_key()
    obj = f"{PREFIX}/{key}"
    await store.write(key, chunked(b"0" * 100), limit=1000)
    await store.write(key, chunked(b"stale-1" * 10), limit=1000, offset=100)
    await store.write(key, chunked(b"stale-2" * 10), limit=1000, offset=170)
    assert await store.size(key) == 240
    # The database says 100: the client resumes there.
    assert await store.write(key, chunked(b"n" * 80), limit=1000, offset=100) == (80, None)
    assert sorted(s3_bucket.object_keys()) == [obj, f"{obj}.part/{100:020d}"]
    assert await store.size(key) == 180
    assert await read_all(store, key) == b"0" * 100 + b"n" * 80
    # A retry from 0 replaces everything.
    assert (await store.write(key, chunked(b"fresh"), limit=1000))[0] == 5
    assert s3_bucket.object_keys() == [obj]
    assert await read_all(store, key) == b"fresh"


async def test_delete_aborts_a_dead_writers_multipart_upload(store: S3Quarantine, s3_bucket: Bucket) -> None:
    key = new_key()
    obj = f"{PREFIX}/{key}"
    await store.write(key, chunked(b"base"), limit=100)
    s3_bucket.client.create_multipart_upload(Bucket=s3_bucket.name, Key=f"{obj}.part/{4:020d}")
    assert len(s3_bucket.pending_uploads()) == 1
    await store.delete(key)
    assert s3_bucket.object_keys() == []
    assert s3_bucket.pending_uploads() == []


async def test_local_copy_is_private_and_removed(store: S3Quarantine, tmp_path: Path) -> None:
    key = new_key()
    data = os.urandom(3 * MiB)
    await store.write(key, chunked(data), limit=len(data))
    scratch = tmp_path / "scan-tmp"
    async with local_copy(store, key, scratch) as path:
        assert path.read_bytes() == data
        assert path.parent.parent == scratch
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        assert stat.S_IMODE(scratch.stat().st_mode) == 0o700
    assert list(scratch.iterdir()) == []
    with pytest.raises(RuntimeError):
        async with local_copy(store, key, scratch) as path:
            raise RuntimeError("scanner blew up")
    assert list(scratch.iterdir()) == []


def test_settings_accept_s3_urls() -> None:
    s = Settings.from_env(
        {
            "FILEGATE_QUARANTINE_URL": "s3://my-bucket/some/prefix/",
            "FILEGATE_QUARANTINE_ENDPOINT": "http://127.0.0.1:8333",
            "FILEGATE_QUARANTINE_REGION": "eu-west-1",
        }
    )
    assert s.scanning.quarantine_url == "s3://my-bucket/some/prefix"
    assert s.scanning.quarantine_endpoint == "http://127.0.0.1:8333"
    assert s.scanning.quarantine_region == "eu-west-1"
    store = quarantine_store(s)
    assert isinstance(store, S3Quarantine)
    assert (store.bucket, store.prefix) == ("my-bucket", "some/prefix")
    assert Settings.from_env({}).scanning.quarantine_region == "us-east-1"
    assert Settings.from_env({"FILEGATE_QUARANTINE_URL": "s3://bkt"}).scanning.quarantine_url == "s3://bkt"
    for bad in ("s3://", "s3://B/x", "s3://bucket/../x", "s3://bucket/a b", "http://bucket", "s3:/x"):
        with pytest.raises(ValueError, match="QUARANTINE_URL"):
            Settings.from_env({"FILEGATE_QUARANTINE_URL": bad})
    with pytest.raises(ValueError, match="QUARANTINE_ENDPOINT"):
        Settings.from_env({"FILEGATE_QUARANTINE_ENDPOINT": "ftp://x"})
    with pytest.raises(ValueError, match="QUARANTINE_REGION"):
        Settings.from_env({"FILEGATE_QUARANTINE_REGION": "EU WEST"})


# --- the whole path, with the gateway and the worker on S3 -------------------------------------------


@pytest.fixture
def settings(settings: Settings, s3_bucket: Bucket, s3_credentials: None) -> Settings:
    """The uploads settings (test clamd, quick retries) with the quarantine in the test bucket; the
    credentials reach boto3 through its default chain, as in production."""
    return msgspec.structs.replace(
        settings,
        scanning=msgspec.structs.replace(
            settings.scanning,
            quarantine_url=f"s3://{s3_bucket.name}/{PREFIX}",
            quarantine_endpoint=s3_bucket.s3.endpoint,
        ),
    )


async def allow_everything(client: Any, t: Any) -> None:
    r = await client.put("/v1/policy", json={"allowed_types": ["*/*"]}, headers=t.admin.headers)
    assert r.status_code == 200, r.text


async def state_of(client: Any, t: Any, upload_id: str) -> dict[str, Any]:
    r = await client.get(f"/v1/uploads/{upload_id}", headers=t.admin.headers)
    assert r.status_code == 200, r.text
    return dict(r.json())


def only_tenant_keys(s3_bucket: Bucket, tenant_id: str) -> list[str]:
    keys = s3_bucket.object_keys()
    assert all(k.startswith(f"{PREFIX}/{tenant_id}/") for k in keys), keys
    return keys


async def test_raw_and_multipart_uploads_are_scanned_and_served_from_s3(
    client: Any, run_worker: Any, s3_bucket: Bucket, settings: Settings
) -> None:
    t = await create_tenant(client)
    await allow_everything(client, t)
    big = os.urandom(PART_SIZE + 3 * MiB)  # a multipart upload to S3
    png = samples.png_bytes()
    pdf = samples.pdf_bytes()
    ids = []
    for body, name, ctype in ((big, "big.bin", "application/octet-stream"), (png, "p.png", "image/png")):
        r = await client.post(
            "/v1/uploads",
            content=body,
            headers={
                **t.admin.headers,
                "Content-Type": ctype,
                "Content-Disposition": f'attachment; filename="{name}"',
            },
        )
        assert r.status_code == 202, r.text
        assert r.json()["sha256"] == hashlib.sha256(body).hexdigest()
        ids.append((r.json()["id"], body))
    r = await client.post(
        "/v1/uploads", files={"file": ("doc.pdf", pdf, "application/pdf")}, headers=t.admin.headers
    )
    assert r.status_code == 202, r.text
    ids.append((r.json()["id"], pdf))
    assert sorted(only_tenant_keys(s3_bucket, t.id)) == sorted(f"{PREFIX}/{t.id}/{i}" for i, _ in ids)

    await run_worker()
    for upload_id, body in ids:
        u = await state_of(client, t, upload_id)
        assert u["state"] == "clean", u
        assert u["verdict"]["scanner"] == "clamav"
        r = await client.get(f"/v1/uploads/{upload_id}/content", headers=t.admin.headers)
        assert r.status_code == 200
        assert r.content == body
    assert (await state_of(client, t, ids[2][0]))["detected_type"] == "application/pdf"
    # The scan copies went away with the scans.
    scratch = settings.scan_scratch
    assert list(scratch.iterdir()) == []
    assert scratch.stat().st_mode & 0o777 == 0o700

    # Deleting an upload deletes its object.
    r = await client.delete(f"/v1/uploads/{ids[0][0]}", headers=t.admin.headers)
    assert r.status_code == 204, r.text
    assert f"{PREFIX}/{t.id}/{ids[0][0]}" not in s3_bucket.object_keys()
    assert len(only_tenant_keys(s3_bucket, t.id)) == 2
    assert s3_bucket.pending_uploads() == []


async def test_refused_upload_leaves_nothing_in_s3(client: Any, s3_bucket: Bucket) -> None:
    t = await create_tenant(client)
    r = await client.put(
        "/v1/policy",
        json={"allowed_types": ["*/*"], "max_file_size": PART_SIZE + MiB},
        headers=t.admin.headers,
    )
    assert r.status_code == 200, r.text

    # In a multipart body the file's size is not announced: refused while streaming, after one S3 part.
    r = await client.post(
        "/v1/uploads",
        files={"file": ("big.bin", os.urandom(PART_SIZE + 2 * MiB), "application/octet-stream")},
        headers=t.admin.headers,
    )
    assert r.status_code == 413, r.text
    assert r.json()["code"] == "file_too_large"
    assert s3_bucket.object_keys() == []
    assert s3_bucket.pending_uploads() == []


async def test_eicar_in_s3_is_infected(client: Any, run_worker: Any, s3_bucket: Bucket) -> None:
    t = await create_tenant(client)
    await allow_everything(client, t)
    r = await client.post(
        "/v1/uploads",
        content=EICAR,
        headers={**t.admin.headers, "Content-Type": "application/octet-stream"},
    )
    assert r.status_code == 202, r.text
    upload_id = r.json()["id"]
    await run_worker()
    u = await state_of(client, t, upload_id)
    assert u["state"] == "infected", u
    assert "eicar" in u["verdict"]["signature"].lower()
    r = await client.get(f"/v1/uploads/{upload_id}/content", headers=t.admin.headers)
    assert r.status_code == 409
    only_tenant_keys(s3_bucket, t.id)


async def cut_patch(client: Any, path: str, headers: dict[str, str], declared: int, sent: bytes) -> None:
    """A PATCH whose client goes away after `sent`, though it announced `declared` bytes (raw ASGI)."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "PATCH",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (k.lower().encode(), v.encode()) for k, v in {**headers, "Content-Length": str(declared)}.items()
        ]
        + [(b"host", b"testserver")],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        "state": {},
    }
    messages: list[dict[str, Any]] = [{"type": "http.request", "body": sent, "more_body": True}]

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        pass

    # The test client runs the app on its portal's event loop (the app's Redis and database pools live there).
    await asyncio.to_thread(client.blocking_portal.call, client.app, scope, receive, send)


async def test_tus_with_a_cut_patch_on_s3(client: Any, run_worker: Any, s3_bucket: Bucket) -> None:
    t = await create_tenant(client)
    await allow_everything(client, t)
    data = os.urandom(PART_SIZE + 9 * MiB + 321)
    tus = {"Tus-Resumable": "1.0.0", **t.admin.headers}
    meta = "filename " + base64.b64encode(b"big.bin").decode()
    r = await client.post(
        "/v1/tus/", headers={**tus, "Upload-Length": str(len(data)), "Upload-Metadata": meta}
    )
    assert r.status_code == 201, r.text
    path = r.headers["location"]
    upload_id = path.rstrip("/").rsplit("/", 1)[1]
    patch = {**tus, "Content-Type": "application/offset+octet-stream"}

    first = PART_SIZE + MiB  # a multipart base object
    r = await client.patch(path, content=data[:first], headers={**patch, "Upload-Offset": "0"})
    assert r.status_code == 204, r.text
    # The second chunk is cut half way: what arrived is kept, as a part.
    await cut_patch(
        client, path, {**patch, "Upload-Offset": str(first)}, 6 * MiB, data[first : first + 3 * MiB]
    )
    r = await client.head(path, headers=tus)
    offset = int(r.headers["upload-offset"])
    assert offset == first + 3 * MiB
    keys = only_tenant_keys(s3_bucket, t.id)
    assert sorted(keys) == [f"{PREFIX}/{t.id}/{upload_id}", f"{PREFIX}/{t.id}/{upload_id}.part/{first:020d}"]
    # The client resumes from the server's offset and finishes.
    r = await client.patch(path, content=data[offset:], headers={**patch, "Upload-Offset": str(offset)})
    assert r.status_code == 204, r.text
    assert r.headers["upload-offset"] == str(len(data))
    # Sealed: one object, no part left, no multipart upload pending.
    assert only_tenant_keys(s3_bucket, t.id) == [f"{PREFIX}/{t.id}/{upload_id}"]
    assert s3_bucket.pending_uploads() == []

    u = await state_of(client, t, upload_id)
    assert u["sha256"] == hashlib.sha256(data).hexdigest()
    assert u["size"] == len(data)
    await run_worker()
    assert (await state_of(client, t, upload_id))["state"] == "clean"
    r = await client.get(f"/v1/uploads/{upload_id}/content", headers=t.admin.headers)
    assert r.status_code == 200
    assert r.content == data


async def test_an_empty_tus_upload_on_s3(client: Any, run_worker: Any, s3_bucket: Bucket) -> None:
    t = await create_tenant(client)
    await allow_everything(client, t)
    r = await client.post(
        "/v1/tus/",
        headers={
            "Tus-Resumable": "1.0.0",
            **t.admin.headers,
            "Upload-Length": "0",
            "Upload-Metadata": "filename " + base64.b64encode(b"empty.txt").decode(),
        },
    )
    assert r.status_code == 201, r.text
    upload_id = r.headers["location"].rstrip("/").rsplit("/", 1)[1]
    u = await state_of(client, t, upload_id)
    assert (u["state"], u["size"]) == ("quarantined", 0)
    assert u["sha256"] == hashlib.sha256(b"").hexdigest()
    assert only_tenant_keys(s3_bucket, t.id) == [f"{PREFIX}/{t.id}/{upload_id}"]
