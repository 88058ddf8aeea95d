"""Refresh rotation and reuse, logout, and revocation of every session of a user."""

from __future__ import annotations

import asyncio

from tests.factories import PASSWORD, bearer, create_api_key, create_tenant, create_user, login


async def _refresh(client, token: str):
    return await client.post("/v1/auth/refresh", json={"refresh_token": token})


async def test_refresh_rotates_and_old_token_is_spent(client) -> None:
    t = await create_tenant(client)
    r = await _refresh(client, t.admin.refresh_token)
    assert r.status_code == 200, r.text
    pair = r.json()
    assert pair["refresh_token"] != t.admin.refresh_token
    assert pair["token_type"] == "Bearer"
    assert 0 < pair["expires_in"] <= 900
    assert r.headers["cache-control"] == "no-store"
    me = await client.get("/v1/me", headers=bearer(pair["access_token"]))
    assert me.status_code == 200


async def test_refresh_token_reuse_revokes_family(client) -> None:
    t = await create_tenant(client)
    first = await _refresh(client, t.admin.refresh_token)
    second_token = first.json()["refresh_token"]
    # The attacker replays the spent token...
    replay = await _refresh(client, t.admin.refresh_token)
    assert replay.status_code == 401
    assert replay.json()["code"] == "token_reused"
    # ...and the legitimate, unspent successor dies with its family.
    after = await _refresh(client, second_token)
    assert after.status_code == 401
    assert after.json()["code"] == "invalid_token"
    # So does the access token issued with the family: the admin signs in again to read the audit.
    assert (await client.get("/v1/me", headers=t.admin.headers)).status_code == 401
    admin = await login(client, t.slug, t.admin_email)
    events = await client.get("/v1/audit", params={"action": "auth.refresh"}, headers=admin.headers)
    reasons = [e["details"].get("reason") for e in events.json()["items"] if e["outcome"] == "failure"]
    assert "reuse" in reasons


async def test_concurrent_refresh_with_one_token_yields_one_pair(client) -> None:
    t = await create_tenant(client)
    results = await asyncio.gather(*[_refresh(client, t.admin.refresh_token) for _ in range(4)])
    assert sorted(r.status_code for r in results).count(200) == 1


async def test_refresh_garbage_and_foreign_shapes(client) -> None:
    for token in ["", "x", "fgr_" + "0" * 32 + "_" + "a" * 43, "fg_" + "0" * 32 + "_" + "a" * 43]:
        r = await _refresh(client, token)
        assert r.status_code in (400, 401), token
        assert r.json()["code"] in ("invalid_token", "validation_failed")


async def test_logout_revokes_family_and_the_presented_access_token(client) -> None:
    t = await create_tenant(client)
    r = await client.post(
        "/v1/auth/logout", json={"refresh_token": t.admin.refresh_token}, headers=t.admin.headers
    )
    assert r.status_code == 204
    assert (await client.get("/v1/me", headers=t.admin.headers)).status_code == 401
    assert (await _refresh(client, t.admin.refresh_token)).status_code == 401


async def test_logout_cannot_revoke_someone_elses_session(client) -> None:
    t = await create_tenant(client)
    _, user = await create_user(client, t, "user")
    r = await client.post(
        "/v1/auth/logout", json={"refresh_token": t.admin.refresh_token}, headers=user.headers
    )
    assert r.status_code == 204
    assert (await _refresh(client, t.admin.refresh_token)).status_code == 200


async def test_disabling_a_user_revokes_all_sessions_at_once(client) -> None:
    t = await create_tenant(client)
    user, session = await create_user(client, t, "user")
    r = await client.patch(f"/v1/users/{user['id']}", json={"disabled": True}, headers=t.admin.headers)
    assert r.status_code == 200
    assert r.json()["disabled"] is True
    assert (await client.get("/v1/me", headers=session.headers)).status_code == 401
    assert (await _refresh(client, session.refresh_token)).status_code == 401
    r = await client.post(
        "/v1/auth/login", json={"tenant": t.slug, "email": user["email"], "password": PASSWORD}
    )
    assert r.status_code == 401
    assert r.json()["code"] == "invalid_credentials"


async def test_role_change_revokes_sessions_and_new_login_carries_new_role(client) -> None:
    t = await create_tenant(client)
    user, session = await create_user(client, t, "viewer")
    r = await client.patch(f"/v1/users/{user['id']}", json={"role": "manager"}, headers=t.admin.headers)
    assert r.status_code == 200
    assert (await client.get("/v1/me", headers=session.headers)).status_code == 401
    fresh = await login(client, t.slug, user["email"])
    me = await client.get("/v1/me", headers=fresh.headers)
    assert me.json()["role"] == "manager"


async def test_password_change_revokes_every_session(client) -> None:
    t = await create_tenant(client)
    user, s1 = await create_user(client, t, "user")
    s2 = await login(client, t.slug, user["email"])
    new = "An0ther-long-passphrase!"
    r = await client.post(
        "/v1/me/password", json={"current_password": PASSWORD, "new_password": new}, headers=s1.headers
    )
    assert r.status_code == 204
    for s in (s1, s2):
        assert (await client.get("/v1/me", headers=s.headers)).status_code == 401
        assert (await _refresh(client, s.refresh_token)).status_code == 401
    await login(client, t.slug, user["email"], new)


async def test_password_change_needs_the_current_password_and_the_policy(client) -> None:
    t = await create_tenant(client)
    _, s = await create_user(client, t, "user")
    r = await client.post(
        "/v1/me/password",
        json={"current_password": "wrong-wrong-wrong", "new_password": "x" * 20},
        headers=s.headers,
    )
    assert r.status_code == 401
    r = await client.post(
        "/v1/me/password",
        json={"current_password": PASSWORD, "new_password": "password1234"},
        headers=s.headers,
    )
    assert r.status_code == 400
    assert r.json()["code"] == "validation_failed"


async def test_erased_user_cannot_log_in_and_keys_die(client) -> None:
    t = await create_tenant(client)
    user, s = await create_user(client, t, "manager")
    key = await create_api_key(client, s, ["users.read"])
    r = await client.delete(f"/v1/users/{user['id']}", headers=t.admin.headers)
    assert r.status_code == 204
    assert (await client.get("/v1/me", headers=bearer(key["key"]))).status_code == 401
    assert (await client.get("/v1/me", headers=s.headers)).status_code == 401
    assert (await client.get(f"/v1/users/{user['id']}", headers=t.admin.headers)).status_code == 404
    r = await client.post(
        "/v1/auth/login", json={"tenant": t.slug, "email": user["email"], "password": PASSWORD}
    )
    assert r.status_code == 401


async def test_erasure_keeps_only_a_pseudonym(client, owner_conn) -> None:
    t = await create_tenant(client)
    user, _ = await create_user(client, t, "user")
    await client.delete(f"/v1/users/{user['id']}", headers=t.admin.headers)
    row = await owner_conn.fetchrow(
        "SELECT email, password_hash, totp_secret FROM users WHERE id = $1::uuid", user["id"]
    )
    assert dict(row) == {"email": None, "password_hash": None, "totp_secret": None}
    leaked = await owner_conn.fetchval(
        "SELECT count(*) FROM audit_events WHERE tenant_id = $1::uuid AND (details::text LIKE '%' || $2 || '%')",
        t.id,
        user["email"],
    )
    assert leaked == 0
    events = await owner_conn.fetchval(
        "SELECT count(*) FROM audit_events WHERE tenant_id = $1::uuid AND target_id = $2", t.id, user["id"]
    )
    assert events >= 2  # created and deleted, under the id only


async def test_last_admin_cannot_be_demoted_disabled_or_deleted(client) -> None:
    t = await create_tenant(client)
    for body in ({"role": "user"}, {"disabled": True}):
        r = await client.patch(f"/v1/users/{t.admin_id}", json=body, headers=t.admin.headers)
        assert r.status_code == 409
    r = await client.delete(f"/v1/users/{t.admin_id}", headers=t.admin.headers)
    assert r.status_code == 409


async def test_access_token_of_a_family_revoked_by_reuse_is_refused(client) -> None:
    t = await create_tenant(client)
    _, s = await create_user(client, t, "user")
    # The thief and the owner each hold one of the family's access tokens.
    first = (await _refresh(client, s.refresh_token)).json()
    assert (await client.get("/v1/me", headers=bearer(first["access_token"]))).status_code == 200
    replay = await _refresh(client, s.refresh_token)
    assert replay.status_code == 401 and replay.json()["code"] == "token_reused"
    # The family is burnt: so is every access token issued from it, not only its refresh tokens.
    for token in (s.access_token, first["access_token"]):
        assert (await client.get("/v1/me", headers=bearer(token))).status_code == 401


async def test_refresh_token_minted_during_a_password_change_cannot_outlive_it(client, owner_conn) -> None:
    t = await create_tenant(client)
    user, s = await create_user(client, t, "user")
    r = await client.post(
        "/v1/me/password",
        json={"current_password": PASSWORD, "new_password": "An0ther-long-passphrase!"},
        headers=s.headers,
    )
    assert r.status_code == 204
    # A refresh that ran concurrently inserted its new row after the revoking UPDATE had read the table:
    # that row is not marked revoked. It must still be dead, because it belongs to the old password.
    await owner_conn.execute(
        "UPDATE refresh_tokens SET revoked_at = NULL WHERE user_id = $1::uuid", user["id"]
    )
    r = await _refresh(client, s.refresh_token)
    assert r.status_code == 401, r.text
