"""A tus upload deleted while its last PATCH is still writing leaves no file behind, in either store.

The PATCH's body is held after its first chunk (the store is writing by then), the upload is deleted (by
DELETE /v1/uploads/{id} or tus termination), then the rest of the body arrives: the PATCH must not
recreate the file for a row that is gone, nor answer 500.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import msgspec
import pytest

from gateway.settings import Settings
from tests.factories import create_tenant
from tests.s3 import Bucket

TUS = {"Tus-Resumable": "1.0.0"}
SIZE = 2 * 1024 * 1024
FIRST = 256 * 1024


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def settings(settings: Settings, store: str, request: pytest.FixtureRequest) -> Settings:
    if store == "local":
        return settings
    bucket: Bucket = request.getfixturevalue("s3_bucket")
    request.getfixturevalue("s3_credentials")
    scanning = msgspec.structs.replace(
        settings.scanning,
        quarantine_url=f"s3://{bucket.name}/quarantine",
        quarantine_endpoint=bucket.s3.endpoint,
    )
    return msgspec.structs.replace(settings, scanning=scanning)


def _stored(settings: Settings, store: str, request: pytest.FixtureRequest, tenant_id: str) -> list[str]:
    if store == "local":
        folder = settings.quarantine_root / tenant_id
        return sorted(p.name for p in folder.iterdir()) if folder.exists() else []
    bucket: Bucket = request.getfixturevalue("s3_bucket")
    keys = bucket.object_keys(f"quarantine/{tenant_id}/")
    return keys + [u["Key"] for u in bucket.pending_uploads()]


@pytest.mark.parametrize("route", ["uploads", "tus"])
async def test_delete_during_the_last_patch_leaves_no_orphan_file(
    racing_client: httpx.AsyncClient,
    settings: Settings,
    store: str,
    route: str,
    request: pytest.FixtureRequest,
) -> None:
    t = await create_tenant(racing_client)  # type: ignore[arg-type]
    created = await racing_client.post(
        "/v1/tus", headers={**t.admin.headers, **TUS, "Upload-Length": str(SIZE)}
    )
    assert created.status_code == 201, created.text
    url = created.headers["location"]
    upload_id = url.rsplit("/", 1)[1]
    first_taken, rest_may_come = asyncio.Event(), asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        yield b"a" * FIRST
        first_taken.set()  # the gateway asks for more: it is writing
        await rest_may_come.wait()
        yield b"b" * (SIZE - FIRST)

    patch = asyncio.ensure_future(
        racing_client.patch(
            url,
            content=body(),
            headers={
                **t.admin.headers,
                **TUS,
                "Upload-Offset": "0",
                "Content-Type": "application/offset+octet-stream",
                "Content-Length": str(SIZE),
            },
        )
    )
    await asyncio.wait_for(first_taken.wait(), 10)
    target = f"/v1/uploads/{upload_id}" if route == "uploads" else url
    deleted = await racing_client.delete(target, headers={**t.admin.headers, **TUS})
    assert deleted.status_code == 204, deleted.text
    rest_may_come.set()
    answer = await asyncio.wait_for(patch, 30)

    assert answer.status_code == 404, answer.text
    assert (await racing_client.get(f"/v1/uploads/{upload_id}", headers=t.admin.headers)).status_code == 404
    assert _stored(settings, store, request, t.id) == []
