"""Instagram through a running gateway: the fake Graph API fetches the signed media link from the gateway
itself, as Instagram does; delivery by the real worker, publishing on request, a failure and its retry."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from arq.worker import Worker

from gateway.settings import Settings
from scanning import samples
from tests.conftest import TestDatabase
from tests.e2e.conftest import LiveServer, Tenant, make_tenant, server_env, start_server, stop_all
from tests.factories import PASSWORD
from tests.fakes.instagram import FakeInstagram, running
from workers.settings import worker_settings


@pytest.fixture
def instagram() -> Iterator[FakeInstagram]:
    with running(FakeInstagram(in_progress_polls=1)) as fake:
        yield fake


@pytest.fixture
def gateway(
    test_db: TestDatabase, tmp_path: Path, clamd_url: str, instagram: FakeInstagram
) -> Iterator[LiveServer]:
    env = server_env(
        test_db,
        tmp_path / "var",
        FILEGATE_CLAMD_URL=clamd_url,
        FILEGATE_INSTAGRAM_GRAPH_URL=instagram.url,
        FILEGATE_INSTAGRAM_POLL_MS="50",
        FILEGATE_CONNECTOR_ALLOW_PRIVATE="true",
        FILEGATE_DELIVERY_MAX_TRIES="2",
        FILEGATE_DELIVERY_RETRY_BASE_MS="50",
    )
    env["FILEGATE_PUBLIC_URL"] = f"http://127.0.0.1:{env['FILEGATE_PORT']}"
    proc = start_server(env, tmp_path / "gateway.log")
    try:
        yield LiveServer(url=env["FILEGATE_PUBLIC_URL"], log_path=tmp_path / "gateway.log", env=env)
    finally:
        stop_all([proc])


def run_worker(server: LiveServer) -> None:
    """The real worker, in burst mode, with the gateway's own environment (keys, public URL, database)."""
    settings = Settings.from_env(server.env)

    async def burst() -> None:
        ws = worker_settings(settings)
        ws.update(cron_jobs=[], handle_signals=False)
        worker = Worker(**ws, burst=True)
        try:
            await asyncio.wait_for(worker.main(), 120)
        finally:
            await worker.close()

    asyncio.run(burst())


def api(server: LiveServer, tenant: Tenant) -> httpx.Client:
    return httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {tenant.access_token}"}, timeout=60
    )


def upload_jpeg(client: httpx.Client, data: bytes, **params: str) -> str:
    r = client.post(
        "/v1/uploads",
        params=params,
        content=data,
        headers={"Content-Type": "image/jpeg", "Content-Disposition": 'attachment; filename="p.jpg"'},
    )
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


def test_instagram_delivery_publish_failure_and_retry(gateway: LiveServer, instagram: FakeInstagram) -> None:
    tenant = make_tenant(gateway)
    client = api(gateway, tenant)
    r = client.post(
        "/v1/connections",
        json={
            "name": "ig",
            "kind": "instagram",
            "config": {"ig_user_id": instagram.ig_user_id, "graph_api_version": "v21.0"},
            "secrets": {"access_token": instagram.token},
        },
    )
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    assert client.post(f"/v1/connections/{cid}/test").json()["ok"] is True
    jpeg = samples.jpeg_bytes()

    # 1. Delivery: clean → delivered, published from the gateway's own signed link.
    delivered = upload_jpeg(client, jpeg, connection_id=cid)
    run_worker(gateway)
    assert client.get(f"/v1/uploads/{delivered}").json()["state"] == "delivered"
    assert [m.sha256 for m in instagram.published.values()] == [hashlib.sha256(jpeg).hexdigest()]
    link = instagram.fetched_urls[-1]
    assert link.startswith(f"{gateway.url}/v1/media/")
    assert not instagram.tokens_in_urls() or all(
        "refresh_access_token" in r.path for r in instagram.tokens_in_urls()
    )

    # The link serves that one upload, to anyone holding it, and nothing else: a tampered link or an
    # access token in its place is a 404; the link is not an access token either.
    assert httpx.get(link).content == jpeg
    assert httpx.get(link[:-3] + ("AAA" if not link.endswith("AAA") else "BBB")).status_code == 404
    assert httpx.get(f"{gateway.url}/v1/media/{tenant.access_token}").status_code == 404
    token = link.rsplit("/", 1)[1]
    assert httpx.get(f"{gateway.url}/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401

    # 2. Publishing on request (Admin), for an upload without a connection.
    later = upload_jpeg(client, jpeg)
    run_worker(gateway)
    assert client.get(f"/v1/uploads/{later}").json()["state"] == "clean"
    r = client.post(f"/v1/connections/{cid}/instagram/media", json={"upload_id": later, "caption": "hello"})
    assert r.status_code == 201, r.text
    assert r.json()["media_id"] in instagram.published
    # A User may publish only their own uploads: someone else's is answered like a missing one.
    httpx.post(
        f"{gateway.url}/v1/users",
        headers={"Authorization": f"Bearer {tenant.access_token}"},
        json={"email": f"u@{tenant.slug}.test", "role": "user", "password": PASSWORD},
    ).raise_for_status()
    login = httpx.post(
        f"{gateway.url}/v1/auth/login",
        json={"tenant": tenant.slug, "email": f"u@{tenant.slug}.test", "password": PASSWORD},
    ).json()
    user = httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {login['access_token']}"})
    r = user.post(f"/v1/connections/{cid}/instagram/media", json={"upload_id": later})
    assert r.status_code == 404, r.text
    # A file that is not clean is never published.
    rejected = client.post(
        "/v1/uploads", content=samples.elf_bytes(), headers={"Content-Type": "image/jpeg"}
    ).json()["id"]
    run_worker(gateway)
    r = client.post(f"/v1/connections/{cid}/instagram/media", json={"upload_id": rejected})
    assert r.status_code == 409 and r.json()["code"] == "not_clean"

    # 3. A destination that refuses the media: delivery_failed; once it accepts, the retry delivers.
    instagram.fail_media_fetch = True
    failing = upload_jpeg(client, jpeg, connection_id=cid)
    run_worker(gateway)
    state = client.get(f"/v1/uploads/{failing}").json()
    assert state["state"] == "delivery_failed" and state["reason"] == "connector_rejected", state
    instagram.fail_media_fetch = False
    assert client.post(f"/v1/uploads/{failing}/retry").status_code == 202
    run_worker(gateway)
    assert client.get(f"/v1/uploads/{failing}").json()["state"] == "delivered"
    assert len(instagram.published) == 3

    # Nothing of the token reached the gateway's log.
    assert instagram.token not in gateway.log_text()
