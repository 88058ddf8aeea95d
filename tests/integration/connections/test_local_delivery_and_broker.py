"""Delivery to a local connection through the real worker, and brokered access to what was delivered."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest
from litestar.testing import AsyncTestClient

from gateway.settings import Settings
from scanning import samples
from tests.factories import TenantHandle, create_tenant, create_user
from tests.integration.connections.conftest import RunWorker, create_connection


def storage_dir(settings: Settings, base_path: str, tenant: TenantHandle) -> Path:
    """Where a local connection keeps its objects: the tenant's own directory first, then the base path."""
    return settings.server.data_dir.resolve() / "storage" / tenant.id / base_path


async def upload(
    client: AsyncTestClient,  # type: ignore[type-arg]
    tenant: TenantHandle,
    data: bytes,
    filename: str,
    content_type: str,
    **params: str,
) -> dict[str, object]:
    r = await client.post(
        "/v1/uploads",
        params=params,
        content=data,
        headers={
            **tenant.admin.headers,
            "Content-Type": content_type,
            "Content-Disposition": f'attachment; filename="{filename}"',
        },
    )
    assert r.status_code == 202, r.text
    return r.json()  # type: ignore[no-any-return]


async def db_exec(db: object, tenant_id: str, upload_id: object) -> None:
    from sqlalchemy import text

    async with db.tenant(uuid.UUID(tenant_id)) as session:  # type: ignore[attr-defined]
        await session.execute(
            text("UPDATE uploads SET state = 'clean' WHERE id = :id"), {"id": uuid.UUID(str(upload_id))}
        )


async def state_of(client: AsyncTestClient, tenant: TenantHandle, upload_id: object) -> dict[str, object]:  # type: ignore[type-arg]
    r = await client.get(f"/v1/uploads/{upload_id}", headers=tenant.admin.headers)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def test_clean_upload_is_delivered_once_and_served_by_the_broker(
    client: AsyncTestClient,  # type: ignore[type-arg]
    settings: Settings,
    run_worker: RunWorker,
) -> None:
    tenant = await create_tenant(client)
    conn = await create_connection(client, tenant, config={"base_path": "media"})
    png = samples.png_bytes()
    created = await upload(
        client, tenant, png, "photo.png", "image/png", connection_id=conn["id"], path="2026/nov"
    )
    assert created["connection_id"] == conn["id"] and created["path"] == "2026/nov"
    await run_worker()
    done = await state_of(client, tenant, created["id"])
    assert done["state"] == "delivered", done

    stored = storage_dir(settings, "media", tenant) / "2026" / "nov" / "photo.png"
    assert stored.read_bytes() == png

    # The same delivery run again (a retried job): still one object, same bytes, still delivered.
    # (its own engine: the app's pool belongs to the test client's event loop thread)
    from gateway.connections.wiring import connection_services_for
    from gateway.db import Database, create_engine

    db = Database(create_engine(settings))
    try:
        wired = connection_services_for(settings, db)
        # The same job again: the compare-and-set makes it a no-op.
        again = await wired.delivery.run(uuid.UUID(tenant.id), uuid.UUID(str(created["id"])))
        assert again.state is None  # type: ignore[union-attr]
        # Moved back to clean by hand, as a job lost after its delivery would find it: delivered again.
        await db_exec(db, tenant.id, created["id"])
        outcome = await wired.delivery.run(uuid.UUID(tenant.id), uuid.UUID(str(created["id"])))
        assert outcome.state == "delivered"  # type: ignore[union-attr]
    finally:
        await db.dispose()
    files = [p for p in storage_dir(settings, "media", tenant).rglob("*") if p.is_file()]
    assert files == [stored]

    h = tenant.admin.headers
    listed = (await client.get(f"/v1/connections/{conn['id']}/objects", headers=h)).json()
    assert [(i["key"], i["size"]) for i in listed["items"]] == [("2026/nov/photo.png", len(png))]
    got = await client.get(f"/v1/connections/{conn['id']}/objects/2026/nov/photo.png", headers=h)
    assert got.status_code == 200
    assert hashlib.sha256(got.content).hexdigest() == hashlib.sha256(png).hexdigest()
    assert got.headers["x-content-type-options"] == "nosniff"
    assert got.headers["content-type"] == "application/octet-stream"
    assert "photo.png" in got.headers["content-disposition"]

    events = (await client.get("/v1/audit?action=upload.deliver", headers=h)).json()["items"]
    assert [e["outcome"] for e in events] == ["success", "success"]
    assert {e["details"]["ref"] for e in events} == {"2026/nov/photo.png"}
    access = (await client.get("/v1/audit?action=connection.access", headers=h)).json()["items"]
    assert {e["details"]["op"] for e in access} >= {"list", "get"}


async def test_failed_delivery_keeps_the_file_and_retry_delivers(
    client: AsyncTestClient,  # type: ignore[type-arg]
    settings: Settings,
    run_worker: RunWorker,
) -> None:
    tenant = await create_tenant(client)
    conn = await create_connection(client, tenant, config={"base_path": "broken"})
    # The destination cannot be written: where the tenant's folder should be there is a file.
    blocker = storage_dir(settings, "broken", tenant)
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_bytes(b"not a directory")
    png = samples.png_bytes()
    created = await upload(client, tenant, png, "a.png", "image/png", connection_id=conn["id"])
    await run_worker()
    failed = await state_of(client, tenant, created["id"])
    assert failed["state"] == "delivery_failed" and failed["reason"] == "connector_unavailable", failed
    # API.md serves content only when clean or delivered; the clean file is kept for the retry.
    content = await client.get(f"/v1/uploads/{created['id']}/content", headers=tenant.admin.headers)
    assert content.status_code == 409 and content.json()["code"] == "not_clean"

    # Retrying something that did not fail is refused; retrying the failure delivers once fixed.
    blocker.unlink()
    r = await client.post(f"/v1/uploads/{created['id']}/retry", headers=tenant.admin.headers)
    assert r.status_code == 202, r.text
    assert r.json()["state"] == "clean"
    again = await client.post(f"/v1/uploads/{created['id']}/retry", headers=tenant.admin.headers)
    assert again.status_code == 409 and again.json()["code"] == "not_retryable"
    await run_worker()
    assert (await state_of(client, tenant, created["id"]))["state"] == "delivered"
    assert (storage_dir(settings, "broken", tenant) / "a.png").read_bytes() == png
    content = await client.get(f"/v1/uploads/{created['id']}/content", headers=tenant.admin.headers)
    assert content.status_code == 200 and content.content == png
    outcomes = [
        e["outcome"]
        for e in (await client.get("/v1/audit?action=upload.deliver", headers=tenant.admin.headers)).json()[
            "items"
        ]
    ]
    assert outcomes.count("failure") == 1 and outcomes.count("success") == 2  # the retry request + delivery


async def test_upload_naming_an_unknown_or_foreign_connection_is_refused(
    client: AsyncTestClient,  # type: ignore[type-arg]
) -> None:
    tenant = await create_tenant(client)
    other = await create_tenant(client)
    foreign = await create_connection(client, other)
    for cid in (str(uuid.uuid4()), foreign["id"]):
        r = await client.post(
            "/v1/uploads",
            params={"connection_id": cid},
            content=samples.png_bytes(),
            headers={**tenant.admin.headers, "Content-Type": "image/png"},
        )
        assert r.status_code == 422, r.text
        assert r.json()["code"] == "unknown_connection"
    listed = (await client.get("/v1/uploads", headers=tenant.admin.headers)).json()
    assert listed["items"] == []


TRAVERSALS = [
    "../x",
    "..%2Fx",
    "%2e%2e/x",
    "%252e%252e%252fsecret",
    "a/../../b",
    "a/./b",
    "\uff0e\uff0e/x",
    "\u2025/x",
    "a\\..\\b",
    "a%5c..%5cb",
    "a\u202e.png",
    "a\x00b",
    "a//b",
]


@pytest.mark.parametrize("key", TRAVERSALS)
async def test_traversal_is_refused_on_every_brokered_route(
    client: AsyncTestClient,  # type: ignore[type-arg]
    settings: Settings,
    key: str,
) -> None:
    tenant = await create_tenant(client)
    conn = await create_connection(client, tenant, config={"base_path": "media"})
    # A file outside the tenant's root that a traversal would reach.
    outside = settings.server.data_dir.resolve() / "storage" / tenant.id / "x"
    outside.parent.mkdir(parents=True, exist_ok=True)
    outside.write_bytes(b"secret")
    h = tenant.admin.headers
    quoted = quote(key, safe="/\\.")  # the server decodes this once; the key arrives as written above
    for method, url in (
        ("GET", f"/v1/connections/{conn['id']}/objects/{quoted}"),
        ("DELETE", f"/v1/connections/{conn['id']}/objects/{quoted}"),
    ):
        r = await client.request(method, url, headers=h)
        assert r.status_code in (400, 404), (method, key, r.status_code, r.text)
        assert b"secret" not in r.content
    r = await client.get(f"/v1/connections/{conn['id']}/objects", params={"prefix": key}, headers=h)
    assert r.status_code == 400 and r.json()["code"] in ("invalid_key", "validation_failed"), r.text
    assert outside.read_bytes() == b"secret"
    r = await client.post(
        "/v1/uploads",
        params={"connection_id": conn["id"], "path": key},
        content=samples.png_bytes(),
        headers={**h, "Content-Type": "image/png"},
    )
    assert r.status_code == 400, r.text


async def test_listing_pages_with_sealed_cursors_and_roles_for_delete(
    client: AsyncTestClient,  # type: ignore[type-arg]
    settings: Settings,
) -> None:
    tenant = await create_tenant(client)
    conn = await create_connection(client, tenant, config={"base_path": "media"})
    root = storage_dir(settings, "media", tenant)
    (root / "docs").mkdir(parents=True)
    for i in range(5):
        (root / "docs" / f"{i}.txt").write_bytes(b"x" * i)
    (root / "other.txt").write_bytes(b"o")
    h = tenant.admin.headers
    base = f"/v1/connections/{conn['id']}/objects"
    seen: list[str] = []
    cursor = None
    while True:
        params = {"prefix": "docs/", "limit": "2", **({"cursor": cursor} if cursor else {})}
        page = (await client.get(base, params=params, headers=h)).json()
        seen += [i["key"] for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert "docs" not in cursor  # opaque, sealed
    assert seen == [f"docs/{i}.txt" for i in range(5)]

    # A cursor is bound to its listing and cannot be forged.
    first = (await client.get(base, params={"prefix": "docs/", "limit": "2"}, headers=h)).json()[
        "next_cursor"
    ]
    r = await client.get(base, params={"prefix": "", "cursor": first}, headers=h)
    assert r.status_code == 400
    r = await client.get(base, params={"prefix": "docs/", "cursor": "ZG9jcy8x"}, headers=h)
    assert r.status_code == 400

    _, manager = await create_user(client, tenant, "manager")
    _, user = await create_user(client, tenant, "user")
    assert (await client.delete(f"{base}/docs/0.txt", headers=user.headers)).status_code == 403
    assert (await client.delete(f"{base}/docs/0.txt", headers=manager.headers)).status_code == 204
    assert not (root / "docs" / "0.txt").exists()
    assert (await client.delete(f"{base}/docs/0.txt", headers=manager.headers)).status_code == 404
    assert (await client.get(f"{base}/nothing-here", headers=h)).status_code == 404


def files_under(directory: Path) -> set[Path]:
    """The objects under `directory` (not the storage's own layout marker)."""
    if not directory.exists():
        return set()
    return {p for p in directory.rglob("*") if p.is_file() and not p.name.startswith(".")}


async def test_base_path_naming_another_tenant_cannot_reach_its_objects(
    client: AsyncTestClient,  # type: ignore[type-arg]
    settings: Settings,
    run_worker: RunWorker,
) -> None:
    storage = settings.server.data_dir.resolve() / "storage"
    victim = await create_tenant(client)
    attacker = await create_tenant(client)
    victim_conn = await create_connection(client, victim, config={"base_path": "media"})
    png = samples.png_bytes()
    mine = await upload(
        client, victim, png, "mine.png", "image/png", connection_id=victim_conn["id"], path="docs"
    )
    await run_worker()
    assert (await state_of(client, victim, mine["id"]))["state"] == "delivered"
    victim_files = files_under(storage)
    assert len(victim_files) == 1

    # The attacker names the victim's id in every shape a base path can take.
    shapes = ["media", f"media/{victim.id}", f"media/{victim.id}/docs", victim.id, f"{victim.id}/media", "/"]
    conns = [
        await create_connection(client, attacker, config={"base_path": b}, name=f"c{i}")
        for i, b in enumerate(shapes)
    ]
    planted = [
        await upload(client, attacker, png, f"planted{i}.png", "image/png", connection_id=c["id"])
        for i, c in enumerate(conns)
    ]
    await run_worker()
    for p in planted:
        assert (await state_of(client, attacker, p["id"]))["state"] == "delivered"

    # Nothing the attacker delivered is visible to the victim, and nothing landed in the victim's tree.
    listed = (
        await client.get(f"/v1/connections/{victim_conn['id']}/objects", headers=victim.admin.headers)
    ).json()
    assert [i["key"] for i in listed["items"]] == ["docs/mine.png"], listed
    victim_root = storage / victim.id
    attacker_files = files_under(storage) - victim_files
    assert len(attacker_files) == len(shapes)
    assert all(victim_root not in f.parents for f in attacker_files), attacker_files
    assert all((storage / attacker.id) in f.parents for f in attacker_files), attacker_files

    # The attacker's connections answer only the attacker's objects, never the victim's.
    h = attacker.admin.headers
    for c in conns:
        base = f"/v1/connections/{c['id']}/objects"
        keys = [i["key"] for i in (await client.get(base, headers=h)).json()["items"]]
        assert keys and all("planted" in k for k in keys), keys
        for key in ("docs/mine.png", f"{victim.id}/docs/mine.png", f"media/{victim.id}/docs/mine.png"):
            assert (await client.get(f"{base}/{key}", headers=h)).status_code == 404
            assert (await client.delete(f"{base}/{key}", headers=h)).status_code == 404
    assert files_under(storage) >= victim_files
    assert (
        await client.get(
            f"/v1/connections/{victim_conn['id']}/objects/docs/mine.png", headers=victim.admin.headers
        )
    ).content == png


async def test_symlink_inside_a_local_root_does_not_reach_another_tenant(
    client: AsyncTestClient,  # type: ignore[type-arg]
    settings: Settings,
    run_worker: RunWorker,
) -> None:
    storage = settings.server.data_dir.resolve() / "storage"
    victim = await create_tenant(client)
    attacker = await create_tenant(client)
    victim_conn = await create_connection(client, victim, config={"base_path": "media"})
    attacker_conn = await create_connection(client, attacker, config={"base_path": "media"})
    png = samples.png_bytes()
    await upload(client, victim, png, "secret.png", "image/png", connection_id=victim_conn["id"])
    await upload(
        client,
        attacker,
        b"GIF89a\x01\x00\x01\x00\x00\x00\x00;",
        "own.gif",
        "image/gif",
        connection_id=attacker_conn["id"],
    )
    await run_worker()
    (secret,) = [p for p in storage.rglob("secret.png")]
    (own,) = [p for p in storage.rglob("own.gif")]
    # A link in the attacker's root (an operator's mistake, a restored backup) to the victim's file and tree.
    (own.parent / "link.png").symlink_to(secret)
    (own.parent / "linkdir").symlink_to(secret.parent, target_is_directory=True)
    base = f"/v1/connections/{attacker_conn['id']}/objects"
    h = attacker.admin.headers
    keys = [i["key"] for i in (await client.get(base, headers=h)).json()["items"]]
    assert keys == ["own.gif"], keys
    for key in ("link.png", "linkdir/secret.png"):
        r = await client.get(f"{base}/{key}", headers=h)
        assert r.status_code in (400, 404), (key, r.status_code)
        assert png not in r.content
        r = await client.delete(f"{base}/{key}", headers=h)
        assert r.status_code in (400, 404), (key, r.status_code)
    assert secret.read_bytes() == png


async def test_directories_the_gateway_creates_under_the_data_dir_are_private(
    client: AsyncTestClient,  # type: ignore[type-arg]
    settings: Settings,
    run_worker: RunWorker,
) -> None:
    import os
    import stat

    previous = os.umask(0o022)  # the usual umask: what mkdir gives without an explicit mode is 0755
    try:
        tenant = await create_tenant(client)
        conn = await create_connection(client, tenant, config={"base_path": "media/deep"})
        created = await upload(
            client, tenant, samples.png_bytes(), "p.png", "image/png", connection_id=conn["id"], path="a/b"
        )
        await run_worker()
        assert (await state_of(client, tenant, created["id"]))["state"] == "delivered"
    finally:
        os.umask(previous)
    data = settings.server.data_dir.resolve()
    checked = 0
    for top in ("quarantine", "storage", "keys"):
        root = data / top
        assert root.is_dir(), top
        for path in [root, *root.rglob("*")]:
            mode = stat.S_IMODE(path.lstat().st_mode)
            expected = 0o700 if path.is_dir() else 0o600
            assert mode == expected, (str(path.relative_to(data)), oct(mode))
            checked += 1
    assert checked > 8


async def test_names_the_connectors_refuse_are_made_safe_at_ingest_and_delivered(
    client: AsyncTestClient,  # type: ignore[type-arg]
    settings: Settings,
    run_worker: RunWorker,
) -> None:
    import base64

    tenant = await create_tenant(client)
    conn = await create_connection(client, tenant, config={"base_path": "media"})
    png = samples.png_bytes()
    h = tenant.admin.headers
    names = ["%2e%2e", "..%2f..%2fpasswd.png", "%252e%252e%252fx.png", "\uff0e\uff0e", "\u2025", "a%5cb.png"]
    ids = []
    for name in names:
        r = await client.post(
            "/v1/uploads",
            params={"connection_id": conn["id"], "path": "in"},
            content=png,
            headers={
                **h,
                "Content-Type": "image/png",
                "Content-Disposition": f"attachment; filename*=UTF-8''{quote(name, safe='')}",
            },
        )
        assert r.status_code == 202, r.text
        ids.append(r.json()["id"])
    # tus metadata goes through the same rule.
    meta = ",".join(
        f"{k} {base64.b64encode(v.encode()).decode()}"
        for k, v in {"filename": "%2e%2e", "connection_id": conn["id"], "path": "tus"}.items()
    )
    r = await client.post(
        "/v1/tus",
        headers={**h, "Tus-Resumable": "1.0.0", "Upload-Length": str(len(png)), "Upload-Metadata": meta},
    )
    assert r.status_code == 201, r.text
    tus_id = r.headers["location"].rstrip("/").rsplit("/", 1)[-1]
    r = await client.patch(
        f"/v1/tus/{tus_id}",
        content=png,
        headers={
            **h,
            "Tus-Resumable": "1.0.0",
            "Upload-Offset": "0",
            "Content-Type": "application/offset+octet-stream",
        },
    )
    assert r.status_code == 204, r.text
    ids.append(tus_id)
    await run_worker()
    for upload_id in ids:
        done = await state_of(client, tenant, upload_id)
        assert done["state"] == "delivered", done
    listed = (await client.get(f"/v1/connections/{conn['id']}/objects", headers=h)).json()["items"]
    assert len(listed) == len(set(i["key"] for i in listed)) >= 2


async def test_a_delivery_path_with_no_room_for_the_name_is_refused_at_ingest(
    client: AsyncTestClient,  # type: ignore[type-arg]
) -> None:
    import base64

    tenant = await create_tenant(client)
    conn = await create_connection(client, tenant, config={"base_path": "media"})
    h = tenant.admin.headers
    path = "/".join(["d" * 99] * 9)  # 899 bytes: a valid key by itself, but with a 200-byte name over 1024
    r = await client.post(
        "/v1/uploads",
        params={"connection_id": conn["id"], "path": path},
        content=samples.png_bytes(),
        headers={
            **h,
            "Content-Type": "image/png",
            "Content-Disposition": f'attachment; filename="{"n" * 190}.png"',
        },
    )
    assert r.status_code == 400 and r.json()["code"] == "validation_failed", r.text
    meta = ",".join(
        f"{k} {base64.b64encode(v.encode()).decode()}"
        for k, v in {"filename": "a.png", "connection_id": conn["id"], "path": path}.items()
    )
    r = await client.post(
        "/v1/tus", headers={**h, "Tus-Resumable": "1.0.0", "Upload-Length": "10", "Upload-Metadata": meta}
    )
    assert r.status_code == 400 and r.json()["code"] == "validation_failed", r.text
    assert (await client.get("/v1/uploads", headers=h)).json()["items"] == []


async def test_a_path_with_no_room_under_the_connections_base_is_refused_at_ingest(
    client: AsyncTestClient,  # type: ignore[type-arg]
    run_worker: RunWorker,
) -> None:
    tenant = await create_tenant(client)
    conn = await create_connection(client, tenant, config={"base_path": "/".join(["b" * 99] * 5)})
    h = tenant.admin.headers
    path = "/".join(["d" * 99] * 4)  # fits alone; with the 499-byte base and a 100-byte name, over 1024
    r = await client.post(
        "/v1/uploads",
        params={"connection_id": conn["id"], "path": path},
        content=samples.png_bytes(),
        headers={
            **h,
            "Content-Type": "image/png",
            "Content-Disposition": f'attachment; filename="{"n" * 96}.png"',
        },
    )
    assert r.status_code == 400 and r.json()["code"] == "validation_failed", r.text
    # A short name under the same path still fits: refused only when it would not.
    created = await upload(
        client, tenant, samples.png_bytes(), "a.png", "image/png", connection_id=conn["id"], path=path
    )
    await run_worker()
    assert (await state_of(client, tenant, created["id"]))["state"] == "delivered"
