"""Ingest: streamed into quarantine, limits enforced while streaming, hostile names, tenant isolation."""

from __future__ import annotations

import hashlib
import os
import uuid

from tests.factories import create_tenant, create_user

PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)


async def raw(
    client, session, body: bytes, *, filename: str = "photo.png", content_type: str = "image/png", **params
):
    return await client.post(
        "/v1/uploads",
        content=body,
        params=params,
        headers={
            **session.headers,
            "Content-Type": content_type,
            "Content-Disposition": f'attachment; filename="{filename}"',
        },
    )


def quarantine_files(settings) -> list[str]:
    root = settings.quarantine_root
    return [str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()] if root.exists() else []


async def test_raw_upload_lands_in_quarantine(client, settings) -> None:
    t = await create_tenant(client)
    r = await raw(client, t.admin, PNG)
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["state"] == "quarantined"
    assert body["size"] == len(PNG)
    assert body["sha256"] == hashlib.sha256(PNG).hexdigest()
    assert body["filename"] == "photo.png"
    assert body["verdict"] is None
    assert body["owner_id"] == t.admin_id
    files = quarantine_files(settings)
    assert files == [f"{t.id}/{body['id']}"]
    path = settings.quarantine_root / files[0]
    assert path.read_bytes() == PNG
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    # Not released before it is scanned.
    c = await client.get(f"/v1/uploads/{body['id']}/content", headers=t.admin.headers)
    assert c.status_code == 409
    assert c.json()["code"] == "not_clean"


async def test_multipart_upload_streams_the_file_part(client) -> None:
    t = await create_tenant(client)
    r = await client.post(
        "/v1/uploads",
        files={"file": ("pic.png", PNG, "image/png")},
        data={"path": "inbox/pic.png"},
        headers=t.admin.headers,
    )
    assert r.status_code == 202, r.text
    assert r.json()["size"] == len(PNG)
    assert r.json()["path"] == "inbox/pic.png"
    assert r.json()["declared_type"] == "image/png"


async def test_multipart_without_file_or_with_junk_parts(client) -> None:
    t = await create_tenant(client)
    r = await client.post(
        "/v1/uploads",
        data={"path": "x"},
        files={"other": ("a.png", PNG, "image/png")},
        headers=t.admin.headers,
    )
    assert r.status_code == 400
    r = await client.post(
        "/v1/uploads",
        content=b"--zz\r\nbroken",
        headers={**t.admin.headers, "Content-Type": "multipart/form-data; boundary=zz"},
    )
    assert r.status_code == 400
    assert r.json()["code"] == "validation_failed"


async def test_declared_type_outside_policy_is_refused_before_any_byte(client, settings) -> None:
    t = await create_tenant(client)
    r = await raw(
        client,
        t.admin,
        b"MZ" + os.urandom(100),
        filename="setup.exe",
        content_type="application/x-msdownload",
    )
    assert r.status_code == 415
    assert r.json()["code"] == "type_not_allowed"
    assert quarantine_files(settings) == []
    listed = (await client.get("/v1/uploads", headers=t.admin.headers)).json()["items"]
    assert listed == []


async def test_announced_length_over_limit_is_refused_before_reading(client, settings) -> None:
    t = await create_tenant(client)
    await client.put("/v1/policy", json={"max_file_size": 1000}, headers=t.admin.headers)
    r = await raw(client, t.admin, os.urandom(2000), content_type="application/octet-stream")
    assert r.status_code == 413
    assert r.json()["code"] == "file_too_large"
    assert quarantine_files(settings) == []


async def test_streamed_body_over_limit_leaves_nothing_behind(client, settings) -> None:
    t = await create_tenant(client)
    await client.put("/v1/policy", json={"max_file_size": 100_000}, headers=t.admin.headers)
    r = await client.post(
        "/v1/uploads", files={"file": ("big.png", os.urandom(300_000), "image/png")}, headers=t.admin.headers
    )
    assert r.status_code == 413
    assert r.json()["code"] == "file_too_large"
    assert quarantine_files(settings) == []
    assert (await client.get("/v1/uploads", headers=t.admin.headers)).json()["items"] == []


async def test_exactly_the_limit_is_accepted(client) -> None:
    t = await create_tenant(client)
    await client.put("/v1/policy", json={"max_file_size": len(PNG)}, headers=t.admin.headers)
    assert (await raw(client, t.admin, PNG)).status_code == 202


HOSTILE = [
    ("../../etc/passwd", "passwd"),
    ("..\\..\\windows\\system32\\cmd.exe", "cmd.exe"),
    ("/absolute/evil.png", "evil.png"),
    ("invoice\u202egnp.exe", "invoice_gnp.exe"),
    ("CON.png", "_CON.png"),
    ("nul", "_nul"),
    ("a\x00b\x07c.png", "a_b_c.png"),
    ("....", "upload"),
    ("", "upload"),
    ("\u200bzero\u200dwidth.png", "_zero_width.png"),
]


def raw_multipart(filename: str, body: bytes) -> tuple[bytes, str]:
    """A form built by hand: client libraries escape odd file names, an attacker does not."""
    boundary = "fgboundary7c1e"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        f"Content-Type: image/png\r\n\r\n"
    ).encode("utf-8", "surrogateescape")
    return head + body + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


async def test_hostile_filenames_are_sanitized_and_escaped(client, settings) -> None:
    t = await create_tenant(client)
    for given, expected in HOSTILE:
        body, ctype = raw_multipart(given, PNG)
        r = await client.post("/v1/uploads", content=body, headers={**t.admin.headers, "Content-Type": ctype})
        assert r.status_code == 202, (given, r.text)
        stored = r.json()["filename"]
        if expected is not None:
            assert stored == expected, given
        assert len(stored.encode()) <= 200
        assert "/" not in stored and "\\" not in stored and "\u202e" not in stored
        assert "\u202e" not in r.json()["original_filename"]
    # Every stored file sits under this tenant's prefix, named by upload id only.
    for rel in quarantine_files(settings):
        tenant, name = rel.split("/")
        assert tenant == t.id
        uuid.UUID(name)


async def test_overlong_names_are_refused_or_truncated(client) -> None:
    t = await create_tenant(client)
    body, ctype = raw_multipart("x" * 5000 + ".png", PNG)
    r = await client.post("/v1/uploads", content=body, headers={**t.admin.headers, "Content-Type": ctype})
    assert r.status_code == 400  # over the multipart part-header limit: a problem, not a 500
    assert r.json()["code"] == "validation_failed"
    r = await raw(client, t.admin, PNG, filename="y" * 1500 + ".png")
    assert r.status_code == 202
    stored = r.json()["filename"]
    assert stored.endswith(".png")
    assert len(stored.encode()) <= 200


async def test_rfc5987_filename_and_content_disposition(client) -> None:
    t = await create_tenant(client)
    r = await client.post(
        "/v1/uploads",
        content=PNG,
        headers={
            **t.admin.headers,
            "Content-Type": "image/png",
            "Content-Disposition": "attachment; filename*=UTF-8''r%C3%A9sum%C3%A9%20%E2%80%AE.png",
        },
    )
    assert r.status_code == 202
    assert r.json()["filename"] == "résumé _.png"


async def test_viewer_cannot_upload_and_user_sees_only_own(client) -> None:
    t = await create_tenant(client)
    _, viewer = await create_user(client, t, "viewer")
    _, alice = await create_user(client, t, "user")
    _, bob = await create_user(client, t, "user")
    assert (await raw(client, viewer, PNG)).status_code == 403
    a = (await raw(client, alice, PNG)).json()
    b = (await raw(client, bob, PNG)).json()
    alice_sees = {u["id"] for u in (await client.get("/v1/uploads", headers=alice.headers)).json()["items"]}
    assert alice_sees == {a["id"]}
    assert (await client.get(f"/v1/uploads/{b['id']}", headers=alice.headers)).status_code == 404
    assert (await client.delete(f"/v1/uploads/{b['id']}", headers=alice.headers)).status_code == 404
    viewer_sees = {u["id"] for u in (await client.get("/v1/uploads", headers=viewer.headers)).json()["items"]}
    assert viewer_sees == {a["id"], b["id"]}
    assert (await client.delete(f"/v1/uploads/{a['id']}", headers=viewer.headers)).status_code == 403
    assert (await client.delete(f"/v1/uploads/{a['id']}", headers=alice.headers)).status_code == 204


async def test_other_tenants_upload_is_not_found_on_every_route(client) -> None:
    a = await create_tenant(client)
    b = await create_tenant(client)
    theirs = (await raw(client, b.admin, PNG)).json()["id"]
    for method, suffix in [("GET", ""), ("GET", "/content"), ("DELETE", "")]:
        r = await client.request(method, f"/v1/uploads/{theirs}{suffix}", headers=a.admin.headers)
        assert r.status_code == 404, (method, suffix)
        assert r.json()["code"] == "not_found"
    assert (await client.get(f"/v1/uploads/{theirs}", headers=b.admin.headers)).status_code == 200


async def test_bad_path_and_connection_id(client) -> None:
    t = await create_tenant(client)
    for params in (
        {"path": "../escape.png"},
        {"path": "/abs.png"},
        {"connection_id": "not-a-uuid"},
        {"path": "a/./b"},
    ):
        r = await raw(client, t.admin, PNG, **params)
        assert r.status_code == 400, params
