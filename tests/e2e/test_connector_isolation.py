"""A tenant whose connector endpoint never answers must not take the gateway away from other tenants.

A "tarpit" (a TCP server on 127.0.0.1 that accepts and never says a word) is tenant A's S3 endpoint. A
hammers every brokered route at once, more times than the gateway's database pool has connections
(FILEGATE_DATABASE_POOL_SIZE=4, so at most 8 with overflow); tenant B's plain reads and the readiness probe
must still answer at once, and every one of A's calls must end within the connector deadline with a problem
the client can act on (504 `connector_timeout`, 429 `connector_busy` with Retry-After), never hang.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import TestDatabase
from tests.e2e.conftest import LiveServer, Tenant, make_tenant, running_gateway

pytestmark = pytest.mark.e2e

CONNECTOR_TIMEOUT = 2  # FILEGATE_CONNECTOR_TIMEOUT of the gateway under test
CONCURRENCY = 4  # FILEGATE_CONNECTOR_CONCURRENCY_PER_TENANT of the gateway under test
ATTACKERS = 22


@pytest.fixture
def gateway(test_db: TestDatabase, tmp_path: Path) -> Iterator[LiveServer]:
    with running_gateway(
        test_db,
        tmp_path,
        FILEGATE_CONNECTOR_ALLOW_PRIVATE="true",
        FILEGATE_CONNECTOR_TIMEOUT=str(CONNECTOR_TIMEOUT),
        FILEGATE_CONNECTOR_CONCURRENCY_PER_TENANT=str(CONCURRENCY),
        FILEGATE_LOGIN_IP_LIMIT="1000",
    ) as server:
        yield server


@pytest.fixture
def gateway_default_cap(test_db: TestDatabase, tmp_path: Path) -> Iterator[LiveServer]:
    with running_gateway(
        test_db,
        tmp_path,
        FILEGATE_CONNECTOR_ALLOW_PRIVATE="true",
        FILEGATE_CONNECTOR_TIMEOUT=str(CONNECTOR_TIMEOUT),
        FILEGATE_LOGIN_IP_LIMIT="1000",
    ) as server:
        yield server


def _headers(tenant: Tenant) -> dict[str, str]:
    return {"Authorization": f"Bearer {tenant.access_token}"}


def _tarpit_connection(server: LiveServer, tenant: Tenant, port: int) -> str:
    r = httpx.post(
        f"{server.url}/v1/connections",
        headers=_headers(tenant),
        json={
            "name": "tarpit",
            "kind": "s3",
            "config": {"bucket": "tarpit", "region": "us-east-1", "endpoint_url": f"http://127.0.0.1:{port}"},
            "secrets": {"access_key_id": "AKIDEXAMPLE", "secret_access_key": "not-a-real-secret-0123"},
        },
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def _timed(
    call: asyncio.Future[httpx.Response] | object,
) -> tuple[int | str, float, httpx.Response | None]:
    started = time.monotonic()
    try:
        response = await call  # type: ignore[misc]
    except httpx.TimeoutException:
        return "timeout", time.monotonic() - started, None
    return response.status_code, time.monotonic() - started, response


async def test_tarpit_endpoint_of_one_tenant_cannot_exhaust_the_pool_for_another(
    gateway: LiveServer, tarpit: int
) -> None:
    a, b = make_tenant(gateway), make_tenant(gateway)
    connection = _tarpit_connection(gateway, a, tarpit)
    base = f"/v1/connections/{connection}"
    routes = [
        ("GET", f"{base}/objects/photo.jpg"),  # stat, then a streamed download
        ("GET", f"{base}/objects?prefix=x"),
        ("DELETE", f"{base}/objects/photo.jpg"),
        ("POST", f"{base}/test"),
    ]
    async with httpx.AsyncClient(base_url=gateway.url, timeout=60) as http:
        attack = [
            asyncio.ensure_future(_timed(http.request(*routes[i % len(routes)], headers=_headers(a))))
            for i in range(ATTACKERS)
        ]
        try:
            await asyncio.sleep(1.0)  # every attacking request is now parked on the tarpit (or refused)
            users = await _timed(http.get("/v1/users", headers=_headers(b), timeout=5))
            ready = await _timed(http.get("/health/ready", timeout=5))
            assert users[0] == 200, f"tenant B's GET /v1/users: {users[0]} after {users[1]:.1f} s"
            assert users[1] < 2.0
            assert ready[0] == 200, f"/health/ready: {ready[0]} after {ready[1]:.1f} s"
            assert ready[2] is not None and ready[2].json()["checks"]["database"] == "ok"
            results = await asyncio.wait_for(asyncio.gather(*attack), timeout=CONNECTOR_TIMEOUT + 15)
        finally:
            for task in attack:
                task.cancel()

    codes: dict[str, int] = {}
    for status, elapsed, response in results:
        assert response is not None, f"an attacking request hung ({status} after {elapsed:.1f} s)"
        assert elapsed < CONNECTOR_TIMEOUT + 5, f"{response.request.url} took {elapsed:.1f} s"
        body = response.json()
        if status == 200:  # POST .../test reports the timeout as its result
            assert response.request.url.path.endswith("/test") and body["ok"] is False, body
            assert "did not answer" in body["detail"]
            code = "connector_timeout"
        else:
            code = body["code"]
            assert (status, code) in {(504, "connector_timeout"), (429, "connector_busy")}, body
            assert int(response.headers["Retry-After"]) >= 1
        codes[code] = codes.get(code, 0) + 1
    # The cap let CONCURRENCY calls through at a time and refused the rest at once.
    assert codes.get("connector_timeout", 0) >= CONCURRENCY
    assert codes.get("connector_busy", 0) >= 1

    # Once A's calls are over, A's slots are free again: the next call is refused by the deadline, not the cap.
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
        again = await http.get(f"{base}/objects/photo.jpg", headers=_headers(a))
    assert again.status_code == 504 and again.json()["code"] == "connector_timeout"


async def test_tarpit_endpoint_of_one_tenant_cannot_tie_up_the_threads_another_needs(
    gateway_default_cap: LiveServer, tarpit: int
) -> None:
    """A blocking SDK call stuck on a silent service keeps its worker thread even after its request gave up
    (a thread cannot be cancelled): those threads must be the tenant's own, not the ones every other tenant's
    connectors and uploads share."""
    gateway = gateway_default_cap
    a, b = make_tenant(gateway), make_tenant(gateway)
    base = f"/v1/connections/{_tarpit_connection(gateway, a, tarpit)}"
    r = httpx.post(
        f"{gateway.url}/v1/connections",
        headers=_headers(b),
        json={"name": "files", "kind": "local", "config": {"base_path": "b-files"}, "secrets": {}},
    )
    assert r.status_code == 201, r.text
    b_objects = f"/v1/connections/{r.json()['id']}/objects"
    async with httpx.AsyncClient(base_url=gateway.url, timeout=60) as http:
        for _ in range(2):  # a second wave, while the first one's threads are still stuck
            attack = [
                asyncio.ensure_future(http.get(f"{base}/objects?prefix={i}", headers=_headers(a)))
                for i in range(ATTACKERS)
            ]
            await asyncio.sleep(1.0)  # A's calls are parked on the tarpit, or refused
            listing = await _timed(http.get(b_objects, headers=_headers(b), timeout=10))
            assert listing[0] == 200, f"tenant B's listing: {listing[0]} after {listing[1]:.1f} s"
            assert listing[1] < 1.5
            for done in await asyncio.gather(*attack):
                assert done.status_code in (504, 429), done.text
