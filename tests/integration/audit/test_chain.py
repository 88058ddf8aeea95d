"""The audit chain: tamper evidence, gap-free under concurrency, recomputable from an export."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid

import msgspec
import pytest

from gateway.audit import Actor, AuditContext, AuditRecorder, Target
from gateway.audit.chain import GENESIS
from gateway.db import Database, create_engine
from tests.factories import create_api_key, create_tenant


async def _verify(client, t) -> dict:
    r = await client.get("/v1/audit/verify", headers=t.admin.headers)
    assert r.status_code == 200
    return r.json()


async def _seed(client, t, n: int = 4) -> None:
    for _ in range(n):
        await create_api_key(client, t.admin, ["users.read"])


async def test_untouched_chain_verifies(client) -> None:
    t = await create_tenant(client)
    await _seed(client, t)
    v = await _verify(client, t)
    assert v["ok"] is True
    assert v["first_bad_seq"] is None
    assert v["checked"] == v["head"]["seq"] >= 7


@pytest.mark.parametrize("column", ["action", "details", "at", "actor_id"])
async def test_editing_one_row_is_found_at_that_seq(client, owner_conn, column: str) -> None:
    t = await create_tenant(client)
    await _seed(client, t)
    target = 4
    change = {
        "action": "action = 'auth.logout'",
        "details": """details = '{"scopes": ["audit.read"]}'::jsonb""",
        "at": "at = at - interval '1 hour'",
        "actor_id": "actor_id = 'someone-else'",
    }[column]
    await owner_conn.execute(
        f"UPDATE audit_events SET {change} WHERE tenant_id = $1::uuid AND seq = $2", t.id, target
    )
    v = await _verify(client, t)
    assert v["ok"] is False
    assert v["first_bad_seq"] == target


async def test_editing_a_row_and_recomputing_its_hash_is_still_found(client, owner_conn) -> None:
    t = await create_tenant(client)
    await _seed(client, t)
    await owner_conn.execute(
        "UPDATE audit_events SET action = 'x', hash = repeat('a', 64) WHERE tenant_id = $1::uuid AND seq = 3",
        t.id,
    )
    v = await _verify(client, t)
    assert v["ok"] is False
    assert v["first_bad_seq"] == 3


@pytest.mark.parametrize("which", ["middle", "last", "first"])
async def test_deleting_one_row_is_found_at_that_seq(client, owner_conn, which: str) -> None:
    t = await create_tenant(client)
    await _seed(client, t)
    head = (await _verify(client, t))["head"]["seq"]
    seq = {"middle": 4, "last": head, "first": 1}[which]
    await owner_conn.execute("DELETE FROM audit_events WHERE tenant_id = $1::uuid AND seq = $2", t.id, seq)
    v = await _verify(client, t)
    assert v["ok"] is False
    assert v["first_bad_seq"] == seq


async def test_chain_of_one_tenant_is_independent_of_another(client, owner_conn) -> None:
    a = await create_tenant(client)
    b = await create_tenant(client)
    await _seed(client, b)
    await owner_conn.execute("DELETE FROM audit_events WHERE tenant_id = $1::uuid AND seq = 2", b.id)
    assert (await _verify(client, a))["ok"] is True
    assert (await _verify(client, b))["ok"] is False


async def test_eight_concurrent_writers_leave_a_gap_free_valid_chain(client, settings) -> None:
    t = await create_tenant(client)
    tenant_id = uuid.UUID(t.id)
    db = Database(create_engine(settings))
    recorder = AuditRecorder(db)
    per_writer = 40

    async def writer(n: int) -> None:
        for i in range(per_writer):
            async with db.tenant(tenant_id) as session:
                await recorder.record(
                    session,
                    tenant_id,
                    AuditContext(ip="127.0.0.1", request_id=f"w{n}-{i}"),
                    action="test.write",
                    outcome="success",
                    actor=Actor("system", f"writer-{n}"),
                    target=Target("test", str(i)),
                    details={"writer": n, "i": i},
                )

    try:
        await asyncio.gather(*(writer(n) for n in range(8)))
    finally:
        await db.dispose()
    v = await _verify(client, t)
    assert v["ok"] is True, v
    # tenant.create + user.create + login + 8 * per_writer
    assert v["head"]["seq"] == 3 + 8 * per_writer
    assert v["checked"] == v["head"]["seq"]


async def test_rolled_back_act_leaves_no_event_and_no_gap(client, settings) -> None:
    t = await create_tenant(client)
    tenant_id = uuid.UUID(t.id)
    db = Database(create_engine(settings))
    recorder = AuditRecorder(db)
    try:
        with pytest.raises(RuntimeError):
            async with db.tenant(tenant_id) as session:
                await recorder.record(
                    session,
                    tenant_id,
                    AuditContext(),
                    action="test.doomed",
                    outcome="success",
                    actor=Actor("system"),
                )
                raise RuntimeError("the act failed")
    finally:
        await db.dispose()
    await _seed(client, t, 1)
    v = await _verify(client, t)
    assert v["ok"] is True
    events = (await client.get("/v1/audit", params={"action": "test.doomed"}, headers=t.admin.headers)).json()
    assert events["items"] == []


async def test_export_is_ndjson_oldest_first_and_recomputable(client) -> None:
    t = await create_tenant(client)
    await _seed(client, t, 3)
    r = await client.get("/v1/audit/export", headers=t.admin.headers)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/x-ndjson")
    events = [json.loads(line) for line in r.text.splitlines()]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    prev = GENESIS
    for e in events:
        assert e["prev_hash"] == prev
        body = {k: v for k, v in e.items() if k != "hash"}
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        assert hashlib.sha256(prev.encode() + canonical).hexdigest() == e["hash"]
        prev = e["hash"]
    assert msgspec.json.decode(r.text.splitlines()[-1])["hash"] == (await _verify(client, t))["head"]["hash"]


async def test_audit_query_filters_and_cursor_paging(client) -> None:
    t = await create_tenant(client)
    await _seed(client, t, 5)
    h = t.admin.headers
    page1 = (await client.get("/v1/audit", params={"action": "api_key.create", "limit": 2}, headers=h)).json()
    assert len(page1["items"]) == 2
    assert page1["next_cursor"]
    seqs = [e["seq"] for e in page1["items"]]
    assert seqs == sorted(seqs, reverse=True)
    page2 = (
        await client.get(
            "/v1/audit",
            params={"action": "api_key.create", "limit": 2, "cursor": page1["next_cursor"]},
            headers=h,
        )
    ).json()
    page3 = (
        await client.get(
            "/v1/audit",
            params={"action": "api_key.create", "limit": 2, "cursor": page2["next_cursor"]},
            headers=h,
        )
    ).json()
    all_seqs = [e["seq"] for p in (page1, page2, page3) for e in p["items"]]
    assert len(all_seqs) == 5
    assert len(set(all_seqs)) == 5
    assert page3["next_cursor"] is None
    by_actor = (await client.get("/v1/audit", params={"actor": t.admin_id}, headers=h)).json()["items"]
    assert by_actor
    assert all(e["actor"]["id"] == t.admin_id for e in by_actor)
    future = (await client.get("/v1/audit", params={"since": "2999-01-01T00:00:00Z"}, headers=h)).json()
    assert future["items"] == []
    first = by_actor[-1]
    assert set(first) == {
        "seq",
        "at",
        "action",
        "outcome",
        "actor",
        "target",
        "ip",
        "request_id",
        "details",
        "hash",
        "prev_hash",
    }
