"""Request ids, security headers and operational endpoints."""

from __future__ import annotations

from litestar.testing import AsyncTestClient

from gateway.app import create_app
from gateway.settings import Settings


async def test_request_id_is_echoed_when_sane_and_replaced_when_not(client) -> None:
    r = await client.get("/health/live", headers={"X-Request-ID": "abc.DEF-123_x"})
    assert r.headers["x-request-id"] == "abc.DEF-123_x"
    for bad in ["has space", "x" * 129, "semi;colon", "a/b"]:
        r = await client.get("/health/live", headers={"X-Request-ID": bad})
        assert r.headers["x-request-id"] != bad
        assert len(r.headers["x-request-id"]) == 32


async def test_security_headers_on_success_and_on_errors(client) -> None:
    for r in (await client.get("/health/live"), await client.get("/nope"), await client.get("/v1/me")):
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "no-referrer"
        assert "default-src 'none'" in r.headers["content-security-policy"]
        assert r.headers["cache-control"] == "no-store"
        assert "strict-transport-security" not in r.headers  # not behind TLS here


async def test_hsts_behind_tls(settings: Settings) -> None:
    import msgspec

    tls = msgspec.structs.replace(
        settings, server=msgspec.structs.replace(settings.server, public_url="https://files.example")
    )
    async with AsyncTestClient(app=create_app(tls)) as c:
        r = await c.get("/health/live")
        assert r.headers["strict-transport-security"].startswith("max-age=")


async def test_health_ready_and_live(client) -> None:
    assert (await client.get("/health/live")).json() == {"status": "ok"}
    r = await client.get("/health/ready")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "checks": {"database": "ok", "redis": "ok", "clamd": "absent"}}


async def test_ready_is_503_when_redis_is_down(settings: Settings) -> None:
    import msgspec

    broken = msgspec.structs.replace(
        settings, redis=msgspec.structs.replace(settings.redis, url="redis://127.0.0.1:1/0")
    )
    async with AsyncTestClient(app=create_app(broken)) as c:
        r = await c.get("/health/ready")
        assert r.status_code == 503
        assert r.json()["checks"]["redis"] == "down"
        assert r.json()["checks"]["database"] == "ok"


async def test_metrics_and_token(client, settings: Settings) -> None:
    await client.get("/health/live")
    r = await client.get("/metrics")
    assert r.status_code == 200
    assert 'requests_total{app_name="filegate"' in r.text
    import msgspec

    guarded = msgspec.structs.replace(
        settings, server=msgspec.structs.replace(settings.server, metrics_token="m-token-123")
    )
    async with AsyncTestClient(app=create_app(guarded)) as c:
        assert (await c.get("/metrics")).status_code == 401
        assert (await c.get("/metrics", headers={"Authorization": "Bearer wrong"})).status_code == 401
        assert (await c.get("/metrics", headers={"Authorization": "Bearer m-token-123"})).status_code == 200


async def test_metrics_labels_hold_no_ids(client) -> None:
    await client.get("/v1/users/6f1c1d52-8a0b-4c36-9d2f-1c0e3a9b5f00")
    text = (await client.get("/metrics")).text
    assert "6f1c1d52" not in text


async def test_openapi_schema_and_docs(client) -> None:
    r = await client.get("/schema/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    assert doc["openapi"].startswith("3.1")
    assert "/v1/auth/login" in doc["paths"]
    assert (await client.get("/schema")).status_code == 200


async def test_operator_api_needs_the_operator_token(client) -> None:
    body = {
        "name": "X",
        "slug": "x-slug",
        "admin_email": "a@x.test",
        "admin_password": "Correct-Horse-9-staple",
    }
    assert (await client.post("/v1/tenants", json=body)).status_code == 401
    r = await client.post("/v1/tenants", json=body, headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401
    assert r.json()["code"] == "invalid_token"


async def test_duplicate_slug_is_a_conflict(client) -> None:
    from tests.conftest import OPERATOR_TOKEN

    body = {
        "name": "X",
        "slug": "dup-slug-1",
        "admin_email": "a@x.test",
        "admin_password": "Correct-Horse-9-staple",
    }
    h = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    first = await client.post("/v1/tenants", json=body, headers=h)
    if first.status_code == 409:  # a rerun on the same worker database
        return
    assert first.status_code == 201
    r = await client.post("/v1/tenants", json=body, headers=h)
    assert r.status_code == 409
    assert r.json()["code"] == "conflict"


async def test_lost_database_connections_are_503_never_500_and_recover(client, owner_conn, test_db) -> None:
    from tests.factories import create_tenant

    t = await create_tenant(client)
    for _ in range(4):
        assert (await client.get("/v1/users", headers=t.admin.headers)).status_code == 200
    killed = await owner_conn.fetchval(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1 AND usename = $2",
        test_db.name,
        "filegate_app",
    )
    assert killed >= 1
    codes = [(await client.get("/v1/users", headers=t.admin.headers)).status_code for _ in range(12)]
    assert set(codes) <= {200, 503}, codes
    assert codes[-1] == 200
    r = await client.get("/v1/users", headers=t.admin.headers)
    assert r.status_code == 200
