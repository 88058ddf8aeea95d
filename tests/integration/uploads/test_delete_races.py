"""Deleting an upload while something else acts on it: its verdict, a second delete, a rollback.

Every path that locks an upload row and appends to the tenant's audit chain takes the row first, so a
delete racing a verdict never deadlocks; a delete is a compare-and-set, so two of them record one event;
and the stored bytes go only after the delete committed. The races are forced, not hoped for: a third
connection holds the tenant's audit head while the racers line up behind it, then lets them go.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import asyncpg
import httpx
import pytest
from litestar import Litestar

from gateway.audit import AuditContext
from gateway.security.principal import Principal
from gateway.uploads.pipeline import ScanPipeline
from gateway.uploads.service import UploadService
from scanning import samples
from tenants.models import Role
from tenants.permissions import grants
from tests.conftest import TestDatabase
from tests.factories import Session, create_tenant
from tests.locks import audit_head_held, waiting

ROUNDS = 3


async def _upload(client: httpx.AsyncClient, session: Session) -> dict[str, str]:
    r = await client.post(
        "/v1/uploads", files={"file": ("a.png", samples.png_bytes(), "image/png")}, headers=session.headers
    )
    assert r.status_code == 202, r.text
    return r.json()  # type: ignore[no-any-return]


async def _events(client: httpx.AsyncClient, session: Session, action: str) -> list[dict[str, object]]:
    r = await client.get("/v1/audit", params={"action": action}, headers=session.headers)
    return r.json()["items"]  # type: ignore[no-any-return]


def _pipeline(app: Litestar) -> ScanPipeline:
    state = app.state
    return ScanPipeline(
        db=state.db,
        store=state.uploads.store,
        clamd=state.clamd,
        audit=state.audit,
        policy=state.policy,
        settings=state.settings.scanning,
    )


@pytest.mark.parametrize("first", ["delete", "verdict"])
async def test_delete_racing_its_verdict_neither_deadlocks_nor_fails(
    racing_app: Litestar,
    racing_client: httpx.AsyncClient,
    owner_conn: asyncpg.Connection,
    test_db: TestDatabase,
    first: str,
) -> None:
    t = await create_tenant(racing_client)  # type: ignore[arg-type]
    pipeline = _pipeline(racing_app)
    for _ in range(ROUNDS):
        u = await _upload(racing_client, t.admin)

        delete = racing_client.delete(f"/v1/uploads/{u['id']}", headers=t.admin.headers)
        verdict = pipeline.run(uuid.UUID(t.id), uuid.UUID(u["id"]))
        first_act, second_act = (delete, verdict) if first == "delete" else (verdict, delete)
        async with audit_head_held(test_db, t.id):
            one = asyncio.ensure_future(first_act)
            await waiting(owner_conn, 1, one)
            other = asyncio.ensure_future(second_act)
            await waiting(owner_conn, 2, one, other)
        deleted, _ = (one, other) if first == "delete" else (other, one)
        await asyncio.wait_for(asyncio.gather(one, other), 30)  # a deadlock surfaces here
        response = deleted.result()
        assert isinstance(response, httpx.Response)
        assert response.status_code == 204, response.text
        assert (await racing_client.get(f"/v1/uploads/{u['id']}", headers=t.admin.headers)).status_code == 404
    assert len(await _events(racing_client, t.admin, "upload.delete")) == ROUNDS


async def test_two_deletes_at_once_delete_once_and_record_one_event(
    racing_client: httpx.AsyncClient, owner_conn: asyncpg.Connection, test_db: TestDatabase
) -> None:
    t = await create_tenant(racing_client)  # type: ignore[arg-type]
    for _ in range(ROUNDS):
        u = await _upload(racing_client, t.admin)
        async with audit_head_held(test_db, t.id):
            deletes = [
                asyncio.ensure_future(racing_client.delete(f"/v1/uploads/{u['id']}", headers=t.admin.headers))
                for _ in range(2)
            ]
            await waiting(owner_conn, 2, *deletes)
        answers = await asyncio.wait_for(asyncio.gather(*deletes), 30)
        assert sorted(r.status_code for r in answers) == [204, 404], [r.text for r in answers]
    assert len(await _events(racing_client, t.admin, "upload.delete")) == ROUNDS


async def test_deleted_upload_keeps_its_bytes_until_the_delete_commits(
    racing_app: Litestar, racing_client: httpx.AsyncClient
) -> None:
    t = await create_tenant(racing_client)  # type: ignore[arg-type]
    u = await _upload(racing_client, t.admin)
    state = racing_app.state
    uploads: UploadService = state.uploads
    stored = state.settings.quarantine_root / t.id / u["id"]
    principal = _admin(t.id, t.admin_id)
    assert stored.exists()

    # Rolled back: the upload is still there, and so must be its bytes.
    with contextlib.suppress(_Abort):
        async with state.db.tenant(uuid.UUID(t.id)) as session:
            await uploads.delete(session, principal, uuid.UUID(u["id"]), AuditContext())
            raise _Abort()
    assert (await racing_client.get(f"/v1/uploads/{u['id']}", headers=t.admin.headers)).status_code == 200
    assert stored.exists(), "the bytes of an upload whose delete rolled back are gone"

    # Committed: gone, but only once the row is.
    async with state.db.tenant(uuid.UUID(t.id)) as session:
        await uploads.delete(session, principal, uuid.UUID(u["id"]), AuditContext())
        assert stored.exists(), "the bytes went before the delete committed"
    assert not stored.exists()


class _Abort(Exception):
    pass


def _admin(tenant_id: str, user_id: str) -> Principal:
    return Principal(uuid.UUID(tenant_id), uuid.UUID(user_id), Role.ADMIN, grants(Role.ADMIN), via="jwt")


async def test_download_racing_a_delete_gets_every_byte_or_a_clean_404(
    racing_app: Litestar,
    racing_client: httpx.AsyncClient,
    owner_conn: asyncpg.Connection,
    test_db: TestDatabase,
) -> None:
    t = await create_tenant(racing_client)  # type: ignore[arg-type]
    pipeline = _pipeline(racing_app)
    content = samples.png_bytes()
    for _ in range(ROUNDS * 2):
        u = await _upload(racing_client, t.admin)
        assert getattr(await pipeline.run(uuid.UUID(t.id), uuid.UUID(u["id"])), "state", None) == "clean"
        async with audit_head_held(test_db, t.id):
            # The download has found the upload clean and queues for the head first; the delete follows.
            download = asyncio.ensure_future(
                racing_client.get(f"/v1/uploads/{u['id']}/content", headers=t.admin.headers)
            )
            await waiting(owner_conn, 1, download)
            delete = asyncio.ensure_future(
                racing_client.delete(f"/v1/uploads/{u['id']}", headers=t.admin.headers)
            )
            await waiting(owner_conn, 2, download, delete)
        got, deleted = await asyncio.wait_for(asyncio.gather(download, delete), 30)
        assert deleted.status_code == 204, deleted.text
        assert got.status_code == 200, got.text  # it was clean and present when it was asked for
        assert got.content == content
