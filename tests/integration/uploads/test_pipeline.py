"""The pipeline end to end with the real clamd, PostgreSQL and Redis: verdicts, release, and faults."""

from __future__ import annotations

import asyncio
import hashlib
import io
import pickle
import time
import uuid
import zipfile
from pathlib import Path

import msgspec
import pytest
from redis.asyncio import Redis
from structlog.testing import capture_logs

from gateway.audit import AuditRecorder
from gateway.db import Database, create_engine
from gateway.policy.service import PolicyService
from gateway.uploads.pipeline import ScanPipeline, reconcile
from gateway.uploads.quarantine import LocalQuarantine
from scanning import samples
from scanning.clamav import ClamdClient
from tests.conftest import REDIS
from tests.factories import create_tenant
from workers.queue import ArqQueue, queue_name

EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


def zipped(name: str, payload: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(name, payload)
    return buf.getvalue()


async def upload(client, session, body: bytes, name: str, content_type: str) -> dict:
    r = await client.post("/v1/uploads", files={"file": (name, body, content_type)}, headers=session.headers)
    assert r.status_code == 202, r.text
    return r.json()


async def state_of(client, t, upload_id: str) -> dict:
    return (await client.get(f"/v1/uploads/{upload_id}", headers=t.admin.headers)).json()


async def allow_everything(client, t) -> None:
    r = await client.put("/v1/policy", json={"allowed_types": ["*/*"]}, headers=t.admin.headers)
    assert r.status_code == 200


CLEAN = [
    ("photo.png", samples.png_bytes(), "image/png", "image/png"),
    ("photo.jpg", samples.jpeg_bytes(), "image/jpeg", "image/jpeg"),
    ("doc.pdf", samples.pdf_bytes(), "application/pdf", "application/pdf"),
    ("clip.mp4", samples.mp4_bytes(), "video/mp4", "video/mp4"),
]


async def test_real_files_end_clean_and_are_served_byte_identical(client, run_worker) -> None:
    t = await create_tenant(client)
    ids = {}
    for name, body, ctype, _ in CLEAN:
        ids[name] = (await upload(client, t.admin, body, name, ctype))["id"]
    await run_worker()
    for name, body, _, detected in CLEAN:
        u = await state_of(client, t, ids[name])
        assert u["state"] == "clean", (name, u)
        assert u["detected_type"] == detected
        assert u["verdict"]["scanner"] == "clamav"
        assert u["verdict"]["signature"] is None
        assert u["verdict"]["database_version"]
        r = await client.get(f"/v1/uploads/{ids[name]}/content", headers=t.admin.headers)
        assert r.status_code == 200
        assert r.content == body
        assert hashlib.sha256(r.content).hexdigest() == u["sha256"]
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["content-disposition"].startswith("attachment;")
        assert "filename*=UTF-8''" in r.headers["content-disposition"]


@pytest.mark.parametrize(
    ("name", "body", "ctype"),
    [
        ("eicar.com", EICAR, "application/octet-stream"),
        ("eicar.zip", zipped("eicar.com", EICAR), "application/zip"),
        ("eicar2.zip", zipped("inner.zip", zipped("eicar.com", EICAR)), "application/zip"),
        ("marker.txt", b"hello FILEGATE-TEST-MALWARE-MARKER-7f3a bye", "text/plain"),
    ],
)
async def test_infected_files_are_never_served(
    client, run_worker, name: str, body: bytes, ctype: str
) -> None:
    t = await create_tenant(client)
    await allow_everything(client, t)
    u = await upload(client, t.admin, body, name, ctype)
    await run_worker()
    done = await state_of(client, t, u["id"])
    assert done["state"] == "infected", done
    assert done["verdict"]["signature"]
    r = await client.get(f"/v1/uploads/{u['id']}/content", headers=t.admin.headers)
    assert r.status_code == 409
    assert r.json()["code"] == "not_clean"
    events = (
        await client.get("/v1/audit", params={"action": "upload.verdict"}, headers=t.admin.headers)
    ).json()
    assert [e["details"]["state"] for e in events["items"]] == ["infected"]


@pytest.mark.parametrize(
    ("name", "body", "ctype", "reason"),
    [
        ("evil.png", samples.elf_bytes(), "image/png", None),
        ("page.png", samples.html_bytes(), "image/png", None),
        ("script.svg", samples.svg_bytes("<script>alert(1)</script>"), "image/svg+xml", "active_content"),
        ("poly.jpg", samples.jpeg_with_zip(), "image/jpeg", "polyglot"),
        ("bomb.zip", samples.zip_bomb(), "application/zip", "archive_limits"),
        ("quine.zip", samples.quine_zip(), "application/zip", None),
    ],
)
async def test_rejections(client, run_worker, name: str, body: bytes, ctype: str, reason: str | None) -> None:
    t = await create_tenant(client)
    await client.put(
        "/v1/policy", json={"allowed_types": ["image/*", "application/zip"]}, headers=t.admin.headers
    )
    u = await upload(client, t.admin, body, name, ctype)
    await run_worker()
    done = await state_of(client, t, u["id"])
    assert done["state"] == "rejected", done
    if reason:
        assert done["reason"] == reason
    assert (await client.get(f"/v1/uploads/{u['id']}/content", headers=t.admin.headers)).status_code == 409


async def test_detected_type_outside_policy_is_rejected_whatever_was_declared(client, run_worker) -> None:
    t = await create_tenant(client)
    u = await upload(client, t.admin, samples.pdf_bytes(), "pic.png", "image/png")
    await client.put("/v1/policy", json={"allowed_types": ["image/*"]}, headers=t.admin.headers)
    await run_worker()
    done = await state_of(client, t, u["id"])
    assert done["state"] == "rejected"
    assert done["reason"] in ("type_not_allowed", "type_mismatch")


async def test_scanner_down_fails_closed_then_the_true_verdict(client, run_worker, settings) -> None:
    """clamd unreachable: never clean; retries spent → scan_failed; a fresh upload waits and then passes."""
    t = await create_tenant(client)
    dead = msgspec.structs.replace(settings.scanning, clamd_url="tcp://127.0.0.1:9", max_tries=3)
    failed = await upload(client, t.admin, samples.png_bytes(), "a.png", "image/png")
    await run_worker(scanning=dead)
    done = await state_of(client, t, failed["id"])
    assert done["state"] == "scan_failed"
    assert done["reason"] == "scanner_unavailable"
    assert (
        await client.get(f"/v1/uploads/{failed['id']}/content", headers=t.admin.headers)
    ).status_code == 409

    waiting = await upload(client, t.admin, samples.png_bytes(), "b.png", "image/png")
    patient = msgspec.structs.replace(dead, max_tries=1000, retry_base=0.2)
    with pytest.raises(TimeoutError):
        await run_worker(timeout=1.5, scanning=patient)
    assert (await state_of(client, t, waiting["id"]))["state"] in ("quarantined", "scanning")
    await run_worker()  # clamd is back: the deferred job finishes with the real verdict
    assert (await state_of(client, t, waiting["id"]))["state"] == "clean"


async def test_same_job_twice_gives_one_verdict_and_one_event(client, settings) -> None:
    t = await create_tenant(client)
    u = await upload(client, t.admin, samples.png_bytes(), "a.png", "image/png")
    db = Database(create_engine(settings))
    audit = AuditRecorder(db)
    pipeline = ScanPipeline(
        db=db,
        store=LocalQuarantine(settings.quarantine_root),
        clamd=ClamdClient(settings.scanning.clamd_url or ""),
        audit=audit,
        policy=PolicyService(audit=audit),
        settings=settings.scanning,
    )
    try:
        outcomes = await asyncio.gather(
            *[pipeline.run(uuid.UUID(t.id), uuid.UUID(u["id"])) for _ in range(3)]
        )
        again = await pipeline.run(uuid.UUID(t.id), uuid.UUID(u["id"]))
    finally:
        await db.dispose()
    decided = [o.state for o in [*outcomes, again] if getattr(o, "state", None)]
    assert decided == ["clean"]
    events = (
        await client.get("/v1/audit", params={"action": "upload.verdict"}, headers=t.admin.headers)
    ).json()
    assert len(events["items"]) == 1


async def test_lost_job_is_reconciled(client, run_worker, settings) -> None:
    """Redis loses the queued job (flushed): the outbox row still says a scan is owed, the reconciler requeues."""
    t = await create_tenant(client)
    u = await upload(client, t.admin, samples.png_bytes(), "a.png", "image/png")
    redis = Redis.from_url(REDIS)
    try:
        # This test's namespace only: the suite shares one Redis between parallel tests.
        deleted = await redis.delete(queue_name(settings), f"arq:job:scan:{u['id']}")
        assert deleted >= 1
    finally:
        await redis.aclose()
    await run_worker(timeout=5)
    assert (await state_of(client, t, u["id"]))["state"] == "quarantined"
    db = Database(create_engine(settings))
    queue = await ArqQueue.connect(settings)
    try:
        assert await reconcile(db, queue, grace=0) >= 1
        assert await reconcile(db, queue, grace=0) == 0  # idempotent while the job is queued
    finally:
        await queue.close()
        await db.dispose()
    await run_worker()
    assert (await state_of(client, t, u["id"]))["state"] == "clean"


class _TouchesAMarker:
    """Unpickling this opens (creates) the marker file: what an attacker's payload would do with a shell."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


async def test_pickle_planted_in_the_queue_is_never_unpickled_and_the_worker_goes_on(
    client, run_worker, settings, tmp_path
) -> None:
    """Whoever can write to Redis plants a pickled job, as arq's default serializer would have read it."""
    t = await create_tenant(client)
    marker = tmp_path / "pwned"
    evil_id = f"evil:{uuid.uuid4()}"
    payload = pickle.dumps(
        {"t": 1, "f": "scan_upload", "a": (_TouchesAMarker(marker),), "k": {}, "et": int(time.time() * 1000)}
    )
    redis = Redis.from_url(REDIS)
    try:
        await redis.set(f"arq:job:{evil_id}", payload, ex=600)
        await redis.zadd(queue_name(settings), {evil_id: int(time.time() * 1000)})
        u = await upload(client, t.admin, samples.png_bytes(), "a.png", "image/png")
        with capture_logs() as logs:
            await run_worker()
        assert not marker.exists(), "the worker unpickled a job payload from Redis"
        # Dropped, not retried forever, and said out loud.
        assert await redis.zscore(queue_name(settings), evil_id) is None
        assert await redis.exists(f"arq:job:{evil_id}") == 0
        assert any(
            e["event"] == "security.alert" and e.get("kind") == "job_payload_rejected" for e in logs
        ), logs
    finally:
        await redis.delete(f"arq:job:{evil_id}", f"arq:result:{evil_id}", f"arq:retry:{evil_id}")
        await redis.aclose()
    # The worker kept going: the legitimate scan queued after the planted job still gets its verdict.
    assert (await state_of(client, t, u["id"]))["state"] == "clean"


async def test_infected_action_delete_purges_the_content(client, run_worker, settings) -> None:
    t = await create_tenant(client)
    await client.put(
        "/v1/policy", json={"allowed_types": ["*/*"], "infected_action": "delete"}, headers=t.admin.headers
    )
    u = await upload(client, t.admin, EICAR, "e.com", "application/octet-stream")
    await run_worker()
    assert (await state_of(client, t, u["id"]))["state"] == "infected"
    assert not (settings.quarantine_root / t.id / u["id"]).exists()


# Text a browser, a shell or Windows runs when the file is opened under its name.
ACTIVE_NAMES = ["page.html", "page.HTM", "app.js", "mod.mjs", "run.ps1", "run.vbs", "pic.svg", "app.hta"]
ACTIVE_NAMES += ["run.bat", "run.cmd", "setup.exe", "run.sh", "shell.php", "page.xhtml", "x.jse", "x.wsf"]
HOSTILE_TEXT = b"hello <img src=x onerror=alert(document.domain)> and more plain text\n"


async def test_text_under_an_active_extension_is_renamed_by_default(client, run_worker) -> None:
    t = await create_tenant(client)
    ids = {
        name: (await upload(client, t.admin, HOSTILE_TEXT, name, "text/plain"))["id"] for name in ACTIVE_NAMES
    }
    safe = (await upload(client, t.admin, HOSTILE_TEXT, "notes.txt", "text/plain"))["id"]
    png = (await upload(client, t.admin, samples.png_bytes(), "photo.html", "image/png"))["id"]
    await run_worker()
    for name, upload_id in ids.items():
        done = await state_of(client, t, upload_id)
        assert done["state"] == "clean", done
        assert done["detected_type"] == "text/plain"
        assert done["filename"] == f"{name}.txt", done
        r = await client.get(f"/v1/uploads/{upload_id}/content", headers=t.admin.headers)
        assert r.status_code == 200 and r.content == HOSTILE_TEXT
        assert f'filename="{name}.txt"' in r.headers["content-disposition"]
    assert (await state_of(client, t, safe))["filename"] == "notes.txt"
    done = await state_of(client, t, png)
    assert (done["state"], done["filename"]) == ("clean", "photo.html.png")
    events = (
        await client.get("/v1/audit", params={"action": "upload.verdict"}, headers=t.admin.headers)
    ).json()
    renamed = {e["details"].get("renamed_to") for e in events["items"]}
    assert "app.js.txt" in renamed and "photo.html.png" in renamed


async def test_text_under_an_active_extension_is_rejected_when_the_policy_says_so(client, run_worker) -> None:
    t = await create_tenant(client)
    r = await client.put("/v1/policy", json={"extension_mismatch_action": "reject"}, headers=t.admin.headers)
    assert r.status_code == 200, r.text
    assert r.json()["extension_mismatch_action"] == "reject"
    assert (await client.get("/v1/policy", headers=t.admin.headers)).json()[
        "extension_mismatch_action"
    ] == "reject"
    ids = [(await upload(client, t.admin, HOSTILE_TEXT, name, "text/plain"))["id"] for name in ACTIVE_NAMES]
    safe = (await upload(client, t.admin, HOSTILE_TEXT, "notes.txt", "text/plain"))["id"]
    await run_worker()
    for upload_id in ids:
        done = await state_of(client, t, upload_id)
        assert (done["state"], done["reason"]) == ("rejected", "extension_mismatch"), done
        assert (
            await client.get(f"/v1/uploads/{upload_id}/content", headers=t.admin.headers)
        ).status_code == 409
    assert (await state_of(client, t, safe))["state"] == "clean"
    r = await client.put("/v1/policy", json={"extension_mismatch_action": "allow"}, headers=t.admin.headers)
    assert r.status_code == 400, r.text
