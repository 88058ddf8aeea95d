"""CORS per tenant: preflights answered for origins some tenant lists, reads only for the principal's tenant."""

from __future__ import annotations

import uuid

import httpx
import pytest

from gateway.security.cors import TtlCache
from tests.factories import TenantHandle, create_tenant

TUS = {"Tus-Resumable": "1.0.0"}


def new_origin() -> str:
    return f"https://app-{uuid.uuid4().hex[:12]}.example"


async def allow(client, tenant: TenantHandle, *origins: str) -> None:
    r = await client.put("/v1/policy", json={"cors_origins": list(origins)}, headers=tenant.admin.headers)
    assert r.status_code == 200, r.text


async def preflight(
    client, path: str, origin: str, method: str, headers: str | None = None
) -> httpx.Response:
    h = {"Origin": origin, "Access-Control-Request-Method": method}
    if headers is not None:
        h["Access-Control-Request-Headers"] = headers
    r = await client.options(path, headers=h)
    assert r.headers.get("access-control-allow-origin") != "*"
    assert "origin" in r.headers.get("vary", "").lower()
    return r


def cors_headers(r: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in r.headers.items() if k.lower().startswith("access-control-")}


def exposed(r: httpx.Response) -> set[str]:
    return {h.strip().lower() for h in r.headers.get("access-control-expose-headers", "").split(",")}


async def test_preflight_from_an_origin_some_tenant_lists_gets_that_exact_origin(client) -> None:
    a = await create_tenant(client)
    origin = new_origin()
    await allow(client, a, origin)
    r = await preflight(client, "/v1/uploads", origin, "GET", "authorization,x-request-id")
    assert r.status_code == 204
    assert r.headers["access-control-allow-origin"] == origin
    assert r.headers["access-control-allow-credentials"] == "true"
    assert r.headers["access-control-allow-methods"] == "GET"
    assert set(r.headers["access-control-allow-headers"].split(", ")) == {"authorization", "x-request-id"}
    assert r.headers["access-control-max-age"] == "600"
    assert r.headers["x-request-id"]  # answered inside the edge


async def test_listing_ignores_case_as_origins_do(client) -> None:
    a = await create_tenant(client)
    origin = new_origin()
    await allow(client, a, origin)  # the policy holds exact (lower-case) origins only
    mixed = origin.replace("https://app-", "https://App-")
    r = await preflight(client, "/v1/uploads", mixed, "GET")
    assert r.headers["access-control-allow-origin"] == mixed
    r = await client.get("/v1/uploads", headers={**a.admin.headers, "Origin": mixed})
    assert r.headers["access-control-allow-origin"] == mixed


async def test_preflight_from_an_unlisted_origin_gets_no_cors_headers(client) -> None:
    a = await create_tenant(client)
    await allow(client, a, new_origin())
    for origin in (new_origin(), "null", "https://evil.example/path", "*"):
        r = await preflight(client, "/v1/uploads", origin, "GET")
        assert cors_headers(r) == {}, origin


async def test_preflight_with_a_header_or_method_outside_the_allow_list_gets_nothing(client) -> None:
    a = await create_tenant(client)
    origin = new_origin()
    await allow(client, a, origin)
    r = await preflight(client, "/v1/uploads", origin, "POST", "authorization,x-evil")
    assert cors_headers(r) == {}
    for method in ("TRACE", "CONNECT", "patch"):
        r = await preflight(client, "/v1/uploads", origin, method)
        assert cors_headers(r) == {}, method


async def test_tus_preflights_are_answered_by_cors_not_by_tus(client) -> None:
    a = await create_tenant(client)
    origin = new_origin()
    await allow(client, a, origin)
    r = await preflight(
        client, "/v1/tus", origin, "POST", "authorization,tus-resumable,upload-length,upload-metadata"
    )
    assert r.status_code == 204
    assert r.headers["access-control-allow-origin"] == origin
    assert r.headers["access-control-allow-methods"] == "POST"
    assert "tus-version" not in r.headers  # never reached the tus route
    allowed = set(r.headers["access-control-allow-headers"].split(", "))
    assert {"tus-resumable", "upload-length", "upload-metadata"} <= allowed
    r = await preflight(
        client,
        f"/v1/tus/{uuid.uuid4()}",
        origin,
        "PATCH",
        "authorization,content-type,tus-resumable,upload-offset,upload-checksum",
    )
    assert r.headers["access-control-allow-origin"] == origin
    assert r.headers["access-control-allow-methods"] == "PATCH"


async def test_plain_tus_options_still_reaches_tus(client) -> None:
    a = await create_tenant(client)
    origin = new_origin()
    await allow(client, a, origin)
    for headers in ({}, {"Origin": origin}, {"Origin": origin, **a.admin.headers}):
        r = await client.options("/v1/tus", headers=headers)
        assert r.status_code == 204
        assert r.headers["tus-version"] == "1.0.0"
        assert "creation" in r.headers["tus-extension"]
        assert r.headers["tus-resumable"] == "1.0.0"
    # The last one was authenticated from a listed origin: readable, with the tenant's limit.
    assert r.headers["access-control-allow-origin"] == origin
    assert "tus-max-size" in exposed(r)


async def test_authenticated_requests_from_the_tenants_origin_can_read_the_answer(client) -> None:
    a = await create_tenant(client)
    origin = new_origin()
    await allow(client, a, origin)
    r = await client.get("/v1/uploads", headers={**a.admin.headers, "Origin": origin})
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == origin
    assert r.headers["access-control-allow-credentials"] == "true"
    assert "origin" in r.headers["vary"].lower()

    created = await client.post(
        "/v1/tus", headers={**a.admin.headers, **TUS, "Upload-Length": "10", "Origin": origin}
    )
    assert created.status_code == 201, created.text
    assert created.headers["access-control-allow-origin"] == origin
    names = exposed(created)
    for header in (
        "location",
        "upload-offset",
        "upload-length",
        "upload-expires",
        "tus-resumable",
        "x-request-id",
    ):
        assert header in names
        assert header in created.headers
    assert {
        "tus-version",
        "tus-extension",
        "tus-max-size",
        "tus-checksum-algorithm",
        "upload-metadata",
    } <= names
    assert {"ratelimit-limit", "ratelimit-remaining", "ratelimit-reset", "retry-after"} <= names
    assert "content-disposition" in names

    # Errors of the tenant's own requests are readable too (the frontend must see a 404 or a 409).
    r = await client.get(f"/v1/uploads/{uuid.uuid4()}", headers={**a.admin.headers, "Origin": origin})
    assert r.status_code == 404
    assert r.headers["access-control-allow-origin"] == origin


async def test_another_tenants_origin_gets_no_allow_origin(client) -> None:
    a = await create_tenant(client)
    b = await create_tenant(client)
    origin_a = new_origin()
    await allow(client, a, origin_a)
    await allow(client, b, new_origin())
    r = await client.get("/v1/uploads", headers={**b.admin.headers, "Origin": origin_a})
    assert r.status_code == 200
    assert cors_headers(r) == {}
    assert "origin" in r.headers["vary"].lower()
    r = await client.post(
        "/v1/tus", headers={**b.admin.headers, **TUS, "Upload-Length": "10", "Origin": origin_a}
    )
    assert r.status_code == 201
    assert cors_headers(r) == {}


async def test_unauthenticated_answers_get_no_allow_origin(client) -> None:
    a = await create_tenant(client)
    origin = new_origin()
    await allow(client, a, origin)
    for headers in ({}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Bearer "}):
        r = await client.get("/v1/uploads", headers={**headers, "Origin": origin})
        assert r.status_code == 401
        assert cors_headers(r) == {}
        assert "origin" in r.headers["vary"].lower()


async def test_same_origin_requests_are_untouched(client) -> None:
    from litestar.testing import AsyncTestClient

    # Listed or not, a request from the gateway's own origin is not a CORS request (https: the policy
    # lists https origins only, apart from localhost).
    async with AsyncTestClient(app=client.app, base_url="https://testserver.local") as own_client:
        a = await create_tenant(own_client)
        own = "https://testserver.local"
        await allow(own_client, a, own)
        for headers in ({}, {"Origin": own}):
            r = await own_client.get("/v1/uploads", headers={**a.admin.headers, **headers})
            assert r.status_code == 200
            assert cors_headers(r) == {}
            assert "vary" not in r.headers


async def test_the_definer_lookup_answers_yes_or_no_only(client, app_conn) -> None:
    a = await create_tenant(client)
    origin = new_origin()
    await allow(client, a, origin)
    assert await app_conn.fetchval("SELECT origin_is_allowed($1)", origin) is True
    assert await app_conn.fetchval("SELECT origin_is_allowed($1)", new_origin()) is False
    # The app role still sees no policy without a tenant bound (row-level security).
    assert await app_conn.fetchval("SELECT count(*) FROM tenant_policies") == 0


def test_ttl_cache_expires_and_stays_bounded() -> None:
    now = [0.0]
    cache: TtlCache[str, bool] = TtlCache(10, max_entries=3, clock=lambda: now[0])
    cache.put("a", True)
    cache.put("b", False)
    assert cache.get("a") is True
    assert cache.get("b") is False
    now[0] = 10.0
    assert cache.get("a") is None
    for key in "cdef":
        cache.put(key, True)
    assert cache.get("c") is None  # the oldest live entry made room
    assert [cache.get(k) for k in "def"] == [True, True, True]


@pytest.mark.parametrize(
    "origin",
    [
        "https://App.Example",
        "https://a.example:443",
        "http://a.example:80",
        "https://a.example:99999",
        "https://.",
        "https://-a.example",
        "https://a..b",
        "http://frontend.example",
    ],
)
async def test_policy_refuses_origins_a_browser_never_sends(client, origin: str) -> None:
    tenant = await create_tenant(client)
    r = await client.put("/v1/policy", json={"cors_origins": [origin]}, headers=tenant.admin.headers)
    assert r.status_code == 400, (origin, r.text)
    assert r.json()["code"] == "validation_failed"


async def test_policy_accepts_exact_origins(client) -> None:
    tenant = await create_tenant(client)
    origins = ["https://app.example", "https://app.example:8443", "http://localhost:3000"]
    r = await client.put("/v1/policy", json={"cors_origins": origins}, headers=tenant.admin.headers)
    assert r.status_code == 200, r.text
