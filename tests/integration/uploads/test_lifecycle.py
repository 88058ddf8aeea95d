"""Expiry of unfinished tus uploads and retention of content that will never be released."""

from __future__ import annotations

import asyncio

import asyncpg

from gateway.audit import AuditRecorder
from gateway.db import Database, create_engine
from gateway.policy.service import PolicyService
from gateway.uploads.pipeline import retention
from gateway.uploads.quarantine import LocalQuarantine
from scanning import samples
from tests.factories import create_tenant
from tests.locks import waiting

TUS = {"Tus-Resumable": "1.0.0"}


async def _retention(settings) -> int:
    db = Database(create_engine(settings))
    try:
        return await retention(
            db, LocalQuarantine(settings.quarantine_root), PolicyService(audit=AuditRecorder(db))
        )
    finally:
        await db.dispose()


async def test_expired_tus_upload_is_gone_and_cleaned(client, settings, owner_conn) -> None:
    t = await create_tenant(client)
    created = await client.post("/v1/tus", headers={**t.admin.headers, **TUS, "Upload-Length": "100"})
    assert created.status_code == 201
    assert "upload-expires" in created.headers
    url = created.headers["location"]
    upload_id = url.rsplit("/", 1)[1]
    r = await client.patch(
        url,
        content=b"x" * 10,
        headers={
            **t.admin.headers,
            **TUS,
            "Upload-Offset": "0",
            "Content-Type": "application/offset+octet-stream",
        },
    )
    assert r.status_code == 204
    assert (settings.quarantine_root / t.id / upload_id).exists()
    await owner_conn.execute(
        "UPDATE uploads SET expires_at = now() - interval '1 second' WHERE id = $1::uuid", upload_id
    )
    r = await client.head(url, headers={**t.admin.headers, **TUS})
    assert r.status_code == 404
    assert await _retention(settings) >= 1
    assert not (settings.quarantine_root / t.id / upload_id).exists()
    assert (await client.get(f"/v1/uploads/{upload_id}", headers=t.admin.headers)).status_code == 404


async def test_retention_purges_rejected_content_but_keeps_the_verdict(
    client, settings, run_worker, owner_conn
) -> None:
    t = await create_tenant(client)
    await client.put(
        "/v1/policy", json={"allowed_types": ["image/*"], "retention_days": 1}, headers=t.admin.headers
    )
    r = await client.post(
        "/v1/uploads", files={"file": ("evil.png", samples.elf_bytes(), "image/png")}, headers=t.admin.headers
    )
    upload_id = r.json()["id"]
    clean = await client.post(
        "/v1/uploads", files={"file": ("ok.png", samples.png_bytes(), "image/png")}, headers=t.admin.headers
    )
    await run_worker()
    assert (await client.get(f"/v1/uploads/{upload_id}", headers=t.admin.headers)).json()[
        "state"
    ] == "rejected"
    await _retention(settings)
    assert (settings.quarantine_root / t.id / upload_id).exists()  # not yet past retention
    await owner_conn.execute(
        "UPDATE uploads SET updated_at = now() - interval '2 days' WHERE tenant_id = $1::uuid", t.id
    )
    assert await _retention(settings) >= 1
    assert not (settings.quarantine_root / t.id / upload_id).exists()
    kept = (await client.get(f"/v1/uploads/{upload_id}", headers=t.admin.headers)).json()
    assert kept["state"] == "rejected"
    assert kept["reason"]
    # Clean content is never purged by retention.
    assert (settings.quarantine_root / t.id / clean.json()["id"]).exists()


async def test_retention_racing_a_delete_keeps_the_bytes_until_it_commits_and_does_not_fail(
    client, settings, run_worker, owner_conn, test_db
) -> None:
    t = await create_tenant(client)
    await client.put(
        "/v1/policy", json={"allowed_types": ["image/*"], "retention_days": 1}, headers=t.admin.headers
    )
    r = await client.post(
        "/v1/uploads", files={"file": ("evil.png", samples.elf_bytes(), "image/png")}, headers=t.admin.headers
    )
    upload_id = r.json()["id"]
    await run_worker()
    await owner_conn.execute(
        "UPDATE uploads SET updated_at = now() - interval '2 days' WHERE tenant_id = $1::uuid", t.id
    )
    stored = settings.quarantine_root / t.id / upload_id
    # Another actor (a delete) holds the row while retention runs; the delete then commits.
    deleter = await asyncpg.connect(test_db.dsn(test_db.owner_url))
    try:
        tx = deleter.transaction()
        await tx.start()
        await deleter.execute("SELECT 1 FROM uploads WHERE id = $1::uuid FOR UPDATE", upload_id)
        purge = asyncio.ensure_future(_retention(settings))
        await waiting(owner_conn, 1, purge)
        assert stored.exists(), "retention removed the bytes before its transaction committed"
        await deleter.execute("DELETE FROM uploads WHERE id = $1::uuid", upload_id)
        await tx.commit()
    finally:
        await deleter.close()
    assert await asyncio.wait_for(purge, 30) == 0  # nothing left for it to purge, and no error
