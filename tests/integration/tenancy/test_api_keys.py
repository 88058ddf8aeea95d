"""API keys: shown once, stored hashed, scoped, expiring, revoked on the very next request."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.factories import bearer, create_api_key, create_tenant, create_user


async def test_revoked_api_key_fails_on_the_very_next_request(client) -> None:
    t = await create_tenant(client)
    key = await create_api_key(client, t.admin, ["users.read"])
    assert key["key"].startswith(f"fg_{key['id'].replace('-', '')}_")
    assert (await client.get("/v1/users", headers=bearer(key["key"]))).status_code == 200
    r = await client.delete(f"/v1/api-keys/{key['id']}", headers=t.admin.headers)
    assert r.status_code == 204
    r = await client.get("/v1/users", headers=bearer(key["key"]))
    assert r.status_code == 401
    assert r.json()["code"] == "invalid_token"


async def test_key_secret_is_stored_hashed_and_never_listed(client, owner_conn) -> None:
    t = await create_tenant(client)
    key = await create_api_key(client, t.admin, ["users.read"])
    secret = key["key"].rsplit("_", 1)[1]
    listed = await client.get("/v1/api-keys", headers=t.admin.headers)
    assert secret not in listed.text
    assert "key" not in listed.json()["items"][0]
    stored = await owner_conn.fetchval("SELECT secret_hash FROM api_keys WHERE id = $1::uuid", key["id"])
    assert secret not in stored
    assert len(stored) == 64


async def test_key_is_limited_to_its_scopes(client) -> None:
    t = await create_tenant(client)
    key = await create_api_key(client, t.admin, ["policy.read"])
    h = bearer(key["key"])
    assert (await client.get("/v1/policy", headers=h)).status_code == 200
    assert (await client.get("/v1/users", headers=h)).status_code == 403
    me = (await client.get("/v1/me", headers=h)).json()
    assert me["permissions"] == ["policy.read"]


async def test_scopes_beyond_the_creator_are_refused(client) -> None:
    t = await create_tenant(client)
    _, manager = await create_user(client, t, "manager")
    r = await client.post(
        "/v1/api-keys", json={"name": "k", "scopes": ["users.write"]}, headers=manager.headers
    )
    assert r.status_code == 403
    r = await client.post(
        "/v1/api-keys", json={"name": "k", "scopes": ["no.such.scope"]}, headers=manager.headers
    )
    assert r.status_code == 400


async def test_key_loses_rights_its_creator_loses(client) -> None:
    t = await create_tenant(client)
    manager, session = await create_user(client, t, "manager")
    key = await create_api_key(client, session, ["users.read"])
    await client.patch(f"/v1/users/{manager['id']}", json={"role": "viewer"}, headers=t.admin.headers)
    assert (await client.get("/v1/users", headers=bearer(key["key"]))).status_code == 403


async def test_expired_key_is_refused(client, owner_conn) -> None:
    t = await create_tenant(client)
    key = await create_api_key(client, t.admin, ["users.read"])
    await owner_conn.execute(
        "UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE id = $1::uuid", key["id"]
    )
    assert (await client.get("/v1/users", headers=bearer(key["key"]))).status_code == 401


async def test_expiry_must_be_in_the_future(client) -> None:
    t = await create_tenant(client)
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    r = await client.post(
        "/v1/api-keys",
        json={"name": "k", "scopes": ["users.read"], "expires_at": past},
        headers=t.admin.headers,
    )
    assert r.status_code == 400


async def test_key_use_is_tracked_and_audited(client) -> None:
    t = await create_tenant(client)
    key = await create_api_key(client, t.admin, ["users.read", "audit.read"])
    for _ in range(3):
        await client.get("/v1/users", headers=bearer(key["key"]))
    listed = (await client.get("/v1/api-keys", headers=t.admin.headers)).json()["items"]
    assert listed[0]["last_used_at"] is not None
    uses = (await client.get("/v1/audit", params={"action": "api_key.use"}, headers=t.admin.headers)).json()
    assert len(uses["items"]) == 1  # coalesced: once a minute per key
    assert uses["items"][0]["actor"] == {"type": "api_key", "id": key["id"]}


async def test_forged_key_secret_is_refused(client) -> None:
    t = await create_tenant(client)
    key = await create_api_key(client, t.admin, ["users.read"])
    forged = key["key"][:-4] + ("AAAA" if not key["key"].endswith("AAAA") else "BBBB")
    assert (await client.get("/v1/users", headers=bearer(forged))).status_code == 401


async def _child_of(client, parent_key: str, **extra):
    return await client.post(
        "/v1/api-keys", json={"name": "child", "scopes": ["users.read"], **extra}, headers=bearer(parent_key)
    )


async def test_key_created_by_a_key_cannot_outlive_it(client) -> None:
    t = await create_tenant(client)
    parent_expiry = datetime.now(UTC) + timedelta(days=1)
    parent = await create_api_key(
        client, t.admin, ["api_keys.manage", "users.read"], expires_at=parent_expiry.isoformat()
    )
    # The default lifetime (90 days) is capped at the parent's end...
    r = await _child_of(client, parent["key"])
    assert r.status_code == 201, r.text
    assert datetime.fromisoformat(r.json()["expires_at"]) <= parent_expiry
    # ...and a later end asked for explicitly is refused.
    later = (parent_expiry + timedelta(days=30)).isoformat()
    r = await _child_of(client, parent["key"], expires_at=later)
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "validation_failed"


async def test_revoking_a_key_revokes_the_keys_it_created(client, settings) -> None:
    from tests.redis_loss import lose_redis_keys

    t = await create_tenant(client)
    parent = await create_api_key(client, t.admin, ["api_keys.manage", "users.read"])
    child = (await _child_of(client, parent["key"], scopes=["api_keys.manage", "users.read"])).json()
    grandchild = (await _child_of(client, child["key"])).json()
    unrelated = await create_api_key(client, t.admin, ["users.read"])
    for key in (child, grandchild, unrelated):
        assert (await client.get("/v1/users", headers=bearer(key["key"]))).status_code == 200
    assert (await client.delete(f"/v1/api-keys/{parent['id']}", headers=t.admin.headers)).status_code == 204
    for key in (child, grandchild):
        assert (await client.get("/v1/users", headers=bearer(key["key"]))).status_code == 401
    assert (await client.get("/v1/users", headers=bearer(unrelated["key"]))).status_code == 200
    listed = {
        k["id"]: k["revoked"]
        for k in (await client.get("/v1/api-keys", headers=t.admin.headers)).json()["items"]
    }
    assert listed[child["id"]] and listed[grandchild["id"]] and not listed[unrelated["id"]]
    # The database holds it, not only Redis.
    await lose_redis_keys(settings.redis.key_prefix)
    for key in (child, grandchild):
        assert (await client.get("/v1/users", headers=bearer(key["key"]))).status_code == 401
