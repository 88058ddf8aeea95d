"""Connection secrets: sealed per field and bound to tenant|connection|field, rotated by `filegate keys
rotate` (resumable after a kill), opened by the worker, and never seen in a response, a log line or a
problem across the whole lifecycle. Real SeaweedFS S3 behind the connection."""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from connectors.credentials import CredentialManager, LocalKeyRing
from gateway import rotation
from gateway.app import create_app
from gateway.db import Database, create_engine
from gateway.keys import credential_keyring_path
from gateway.settings import Settings
from scanning import samples
from tests.factories import TenantHandle, create_tenant
from tests.integration.connections.conftest import RunWorker
from tests.integration.identity.test_secrets_at_rest import _cli_rotate
from tests.s3 import ACCESS_KEY, REGION, SECRET_KEY, Bucket

# The SeaweedFS identity's secret is the recognisable value: it must never come back out.
RECOGNISABLE = SECRET_KEY


def s3_connection(bucket: Bucket, *, secret: str = SECRET_KEY, name: str = "s3") -> dict[str, Any]:
    return {
        "name": name,
        "kind": "s3",
        "config": {
            "bucket": bucket.name,
            "region": REGION,
            "endpoint_url": bucket.s3.endpoint,
            "prefix": "in",
        },
        "secrets": {"access_key_id": ACCESS_KEY, "secret_access_key": secret},
    }


async def create(client: AsyncTestClient, tenant: TenantHandle, body: dict[str, Any]) -> str:  # type: ignore[type-arg]
    r = await client.post("/v1/connections", json=body, headers=tenant.admin.headers)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def test_secret_never_appears_anywhere_across_the_lifecycle(
    client: AsyncTestClient,  # type: ignore[type-arg]
    settings: Settings,
    s3_bucket: Bucket,
    run_worker: RunWorker,
    caplog: pytest.LogCaptureFixture,
    owner_conn: Any,
) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    tenant = await create_tenant(client)
    h = tenant.admin.headers

    async def call(method: str, url: str, **kw: Any) -> Any:
        r = await client.request(method, url, headers={**h, **kw.pop("headers", {})}, **kw)
        seen.append(f"{r.status_code} {dict(r.headers)} {r.text}")
        return r

    # Created with wrong credentials first: the test fails and says so without the value.
    wrong = "WRONG-" + RECOGNISABLE[::-1]
    r = await call("POST", "/v1/connections", json=s3_connection(s3_bucket, secret=wrong))
    cid = r.json()["id"]
    r = await call("POST", f"/v1/connections/{cid}/test")
    assert r.status_code == 200 and r.json()["ok"] is False, r.text
    assert r.json()["detail"]
    r = await call("GET", f"/v1/connections/{cid}/objects")
    assert r.status_code == 502 and r.json()["code"] == "connector_auth_failed", r.text

    # Rotated to the right secret: works, delivers, lists, downloads.
    r = await call("PATCH", f"/v1/connections/{cid}", json={"secrets": s3_connection(s3_bucket)["secrets"]})
    assert r.status_code == 200
    r = await call("POST", f"/v1/connections/{cid}/test")
    assert r.json()["ok"] is True, r.text
    png = samples.png_bytes()
    r = await call(
        "POST",
        "/v1/uploads",
        params={"connection_id": cid, "path": "photos"},
        content=png,
        headers={"Content-Type": "image/png", "Content-Disposition": 'attachment; filename="p.png"'},
    )
    upload_id = r.json()["id"]
    await run_worker()
    r = await call("GET", f"/v1/uploads/{upload_id}")
    assert r.json()["state"] == "delivered", r.text
    assert s3_bucket.object_keys() == [f"{tenant.id}/in/photos/p.png"]
    r = await call("GET", f"/v1/connections/{cid}/objects", params={"prefix": "photos/"})
    assert [i["key"] for i in r.json()["items"]] == ["photos/p.png"]
    r = await call("GET", f"/v1/connections/{cid}/objects/photos/p.png")
    assert r.content == png
    r = await call("GET", "/v1/connections")
    r = await call("GET", f"/v1/connections/{cid}")
    r = await call("GET", "/v1/audit/export")
    r = await call("DELETE", f"/v1/connections/{cid}/objects/photos/p.png")
    assert r.status_code == 204 and s3_bucket.object_keys() == []
    r = await call("DELETE", f"/v1/connections/{cid}")
    assert r.status_code == 204
    r = await call("GET", "/v1/audit/export")

    everything = (
        "\n".join(seen) + "\n" + "\n".join(rec.getMessage() + str(rec.__dict__) for rec in caplog.records)
    )
    for value in (RECOGNISABLE, wrong):
        assert value not in everything
    # At rest: sealed (the database never holds the plaintext either).
    rows = await owner_conn.fetch(
        "SELECT details::text AS d FROM audit_events WHERE tenant_id = $1::uuid", tenant.id
    )
    assert all(RECOGNISABLE not in r["d"] for r in rows)


async def test_ciphertext_copied_to_another_connection_or_tenant_does_not_open(
    client: AsyncTestClient,  # type: ignore[type-arg]
    s3_bucket: Bucket,
    owner_conn: Any,
) -> None:
    a = await create_tenant(client)
    b = await create_tenant(client)
    source = await create(client, a, s3_connection(s3_bucket, name="source"))
    same_tenant = await create(client, a, s3_connection(s3_bucket, secret="other-secret-1", name="target"))
    other_tenant = await create(client, b, s3_connection(s3_bucket, secret="other-secret-2", name="target"))
    stored = await owner_conn.fetchval("SELECT secrets::text FROM connections WHERE id = $1::uuid", source)
    assert RECOGNISABLE not in stored
    assert {f: json.loads(v)["kek"] for f, v in json.loads(stored).items()} == {
        "access_key_id": 1,
        "secret_access_key": 1,
    }
    for tenant, target in ((a, same_tenant), (b, other_tenant)):
        await owner_conn.execute(
            "UPDATE connections SET secrets = $1::jsonb WHERE id = $2::uuid", stored, target
        )
        r = await client.post(f"/v1/connections/{target}/test", headers=tenant.admin.headers)
        assert r.status_code == 200 and r.json() == {
            "ok": False,
            "detail": "a stored secret of this connection does not open with the current key ring; set it again",
        }
        r = await client.get(f"/v1/connections/{target}/objects", headers=tenant.admin.headers)
        assert r.status_code == 409 and r.json()["code"] == "secrets_unreadable"
    # The original still works.
    r = await client.post(f"/v1/connections/{source}/test", headers=a.admin.headers)
    assert r.json()["ok"] is True, r.text


@pytest.fixture
async def own_db_settings(settings: Settings) -> Any:
    """A database of this test's own: rotation visits every tenant, and parallel tests have other rings."""
    import asyncio

    from gateway.migrate import upgrade
    from tests.conftest import APP_ROLE, TestDatabase, _drop, _recreate

    db = TestDatabase(f"filegate_rotation_{uuid.uuid4().hex[:10]}")
    await _recreate(db)
    await asyncio.to_thread(upgrade, db.owner_url, APP_ROLE)
    yield msgspec.structs.replace(
        settings, database=msgspec.structs.replace(settings.database, url=db.app_url)
    )
    await _drop(db)


async def test_rotation_rewraps_connection_secrets_resumably_and_the_worker_still_delivers(
    own_db_settings: Settings,
    s3_bucket: Bucket,
    run_worker: RunWorker,
) -> None:
    settings = own_db_settings
    async with AsyncTestClient(app=create_app(settings)) as client:
        tenant = await create_tenant(client)
        ids = [await create(client, tenant, s3_connection(s3_bucket, name=f"c{i}")) for i in range(3)]

    path = credential_keyring_path(settings)
    ring = LocalKeyRing.load(str(path)).with_new_key()
    ring.save(path)
    db = Database(create_engine(settings))
    calls = 0

    def die_after_one(_: int) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise KeyboardInterrupt

    try:
        with pytest.raises(KeyboardInterrupt):
            await rotation.rewrap_all(db, CredentialManager(ring), die_after_one)
        assert await rotation.pending(db, CredentialManager(ring)) == 2
    finally:
        await db.dispose()

    out = _cli_rotate(settings)
    assert out.returncode == 0, out.stderr
    assert "resuming" in out.stderr and "4 secret(s) rewrapped" in out.stderr
    assert LocalKeyRing.load(str(path)).versions == [1, 2]

    # A fresh gateway and a fresh worker (both reading the rotated ring) still use the secrets.
    async with AsyncTestClient(app=create_app(settings)) as client:
        from tests.factories import login

        tenant.admin = await login(client, tenant.slug, tenant.admin_email)
        for cid in ids:
            r = await client.post(f"/v1/connections/{cid}/test", headers=tenant.admin.headers)
            assert r.json()["ok"] is True, r.text
        r = await client.post(
            "/v1/uploads",
            params={"connection_id": ids[0]},
            content=samples.png_bytes(),
            headers={**tenant.admin.headers, "Content-Type": "image/png"},
        )
        upload_id = r.json()["id"]
        await run_worker(database=settings.database)
        r = await client.get(f"/v1/uploads/{upload_id}", headers=tenant.admin.headers)
        assert r.json()["state"] == "delivered", r.text
    assert len(s3_bucket.object_keys()) == 1
