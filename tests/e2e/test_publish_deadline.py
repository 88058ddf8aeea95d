"""Publishing to an Instagram Graph API that never answers: the request ends at its deadline with 504
`connector_timeout`, holding no database connection meanwhile, and the tenant's cap refuses the excess."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from scanning import samples
from tests.conftest import TestDatabase
from tests.e2e.conftest import LiveServer, make_tenant, running_gateway
from tests.e2e.test_instagram_delivery import api, run_worker, upload_jpeg

pytestmark = pytest.mark.e2e

TIMEOUT, MAX_WAIT = 1, 1  # a publish's deadline is their sum


@pytest.fixture
def gateway(test_db: TestDatabase, tmp_path: Path, clamd_url: str, tarpit: int) -> Iterator[LiveServer]:
    port = tarpit
    with running_gateway(
        test_db,
        tmp_path,
        FILEGATE_CLAMD_URL=clamd_url,
        FILEGATE_INSTAGRAM_GRAPH_URL=f"http://127.0.0.1:{port}",
        FILEGATE_CONNECTOR_ALLOW_PRIVATE="true",
        FILEGATE_CONNECTOR_TIMEOUT=str(TIMEOUT),
        FILEGATE_INSTAGRAM_MAX_WAIT=str(MAX_WAIT),
        FILEGATE_PUBLIC_URL="http://127.0.0.1:9",
    ) as server:
        yield server


async def test_publishing_to_a_silent_graph_api_ends_at_the_deadline_and_holds_no_connection(
    gateway: LiveServer,
) -> None:
    a, b = make_tenant(gateway), make_tenant(gateway)
    with api(gateway, a) as client:
        r = client.post(
            "/v1/connections",
            json={
                "name": "ig",
                "kind": "instagram",
                "config": {"ig_user_id": "17841400000000000", "graph_api_version": "v21.0"},
                "secrets": {"access_token": "IGQVJ-not-a-real-token"},
            },
        )
        assert r.status_code == 201, r.text
        cid = r.json()["id"]
        upload = upload_jpeg(client, samples.jpeg_bytes())
    await asyncio.to_thread(run_worker, gateway)
    headers = {"Authorization": f"Bearer {a.access_token}"}
    async with httpx.AsyncClient(base_url=gateway.url, timeout=60) as http:
        assert (await http.get(f"/v1/uploads/{upload}", headers=headers)).json()["state"] == "clean"
        started = time.monotonic()
        publishes = [
            asyncio.ensure_future(
                http.post(
                    f"/v1/connections/{cid}/instagram/media", json={"upload_id": upload}, headers=headers
                )
            )
            for _ in range(12)  # more than the pool's 8 connections and the tenant's cap of 8
        ]
        await asyncio.sleep(0.5)
        users = await http.get("/v1/users", headers={"Authorization": f"Bearer {b.access_token}"}, timeout=5)
        assert users.status_code == 200
        answers = await asyncio.gather(*publishes)
        elapsed = time.monotonic() - started
    codes = sorted((r.status_code, r.json()["code"]) for r in answers)
    assert set(codes) <= {(429, "connector_busy"), (504, "connector_timeout")}, codes
    assert codes.count((504, "connector_timeout")) == 8
    assert elapsed < TIMEOUT + MAX_WAIT + 5
