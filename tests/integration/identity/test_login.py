"""Login: no enumeration, lockout, throttling headers, TOTP as a second factor."""

from __future__ import annotations

import asyncio
import time

import pyotp

from tests.factories import PASSWORD, create_tenant, create_user, login


async def _login(client, slug: str, email: str, password: str, **extra):
    return await client.post(
        "/v1/auth/login", json={"tenant": slug, "email": email, "password": password, **extra}
    )


async def test_unknown_tenant_email_and_password_look_the_same(client) -> None:
    t = await create_tenant(client)
    answers = [
        await _login(client, "no-such-tenant", t.admin_email, PASSWORD),
        await _login(client, t.slug, "nobody@nowhere.test", PASSWORD),
        await _login(client, t.slug, t.admin_email, "wrong password entirely"),
    ]
    bodies = [(r.status_code, r.json()["code"], r.json()["detail"]) for r in answers]
    assert len(set(bodies)) == 1
    assert bodies[0][:2] == (401, "invalid_credentials")


async def test_login_sends_rate_limit_headers(client) -> None:
    t = await create_tenant(client)
    r = await _login(client, t.slug, t.admin_email, PASSWORD)
    assert r.status_code == 200
    assert int(r.headers["ratelimit-limit"]) > 0
    assert int(r.headers["ratelimit-remaining"]) >= 0
    assert int(r.headers["ratelimit-reset"]) > 0


async def test_lockout_after_repeated_failures(client, settings) -> None:
    t = await create_tenant(client)
    threshold = settings.auth.lockout_threshold
    for _ in range(threshold):
        r = await _login(client, t.slug, t.admin_email, "not the password at all")
        assert r.status_code == 401
    r = await _login(client, t.slug, t.admin_email, PASSWORD)  # even the right password now
    assert r.status_code == 423
    assert r.json()["code"] == "account_locked"
    assert int(r.headers["retry-after"]) > 0
    events = (
        await client.get("/v1/audit", params={"action": "auth.lockout"}, headers=t.admin.headers)
    ).json()["items"]
    assert len(events) == 1
    failures = (
        await client.get("/v1/audit", params={"action": "auth.login"}, headers=t.admin.headers)
    ).json()["items"]
    assert sum(1 for e in failures if e["outcome"] == "failure") == threshold


async def test_lockout_wins_over_rate_limit(client, settings) -> None:
    t = await create_tenant(client)
    codes = []
    for _ in range(settings.auth.login_account_limit + 3):
        codes.append((await _login(client, t.slug, t.admin_email, "wrong wrong wrong")).status_code)
    assert 429 not in codes[: settings.auth.lockout_threshold + 1]
    assert codes[-1] == 423


async def test_per_ip_throttle(client, settings) -> None:
    t = await create_tenant(client)
    # The counter is a fixed one-minute window: do not start the burst just before it resets.
    if time.time() % 60 > 50:
        await asyncio.sleep(61 - time.time() % 60)
    codes = []
    for i in range(settings.auth.login_ip_limit + 1):
        codes.append((await _login(client, t.slug, f"user{i}@nowhere.test", "whatever-whatever")).status_code)
    assert codes[-1] == 429
    r = await _login(client, t.slug, "another@nowhere.test", "whatever-whatever")
    assert r.json()["code"] == "rate_limited"
    assert int(r.headers["retry-after"]) > 0


async def _enroll(client, session) -> str:
    r = await client.post("/v1/auth/mfa/totp", headers=session.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["otpauth_uri"].startswith("otpauth://totp/")
    return body["secret"]


async def test_totp_enrollment_confirmation_and_login(client) -> None:
    t = await create_tenant(client)
    user, s = await create_user(client, t, "user")
    secret = await _enroll(client, s)
    totp = pyotp.TOTP(secret)
    bad = await client.post("/v1/auth/mfa/totp/confirm", json={"code": "000000"}, headers=s.headers)
    assert bad.status_code == 400
    ok = await client.post("/v1/auth/mfa/totp/confirm", json={"code": totp.now()}, headers=s.headers)
    assert ok.status_code == 200, ok.text
    recovery = ok.json()["recovery_codes"]
    assert len(recovery) == 10

    r = await _login(client, t.slug, user["email"], PASSWORD)
    assert r.status_code == 401
    assert r.json()["code"] == "mfa_required"
    # The code used to confirm is spent; the next step's code works once.
    next_code = totp.at(time.time() + 30)
    r = await _login(client, t.slug, user["email"], PASSWORD, totp=next_code)
    assert r.status_code == 200, r.text
    r = await _login(client, t.slug, user["email"], PASSWORD, totp=next_code)
    assert r.status_code == 401
    assert r.json()["code"] == "invalid_totp"
    # A recovery code stands in for the device, once.
    r = await _login(client, t.slug, user["email"], PASSWORD, totp=recovery[0])
    assert r.status_code == 200
    r = await _login(client, t.slug, user["email"], PASSWORD, totp=recovery[0])
    assert r.status_code == 401


async def test_totp_enrollment_twice_is_a_conflict(client) -> None:
    t = await create_tenant(client)
    _, s = await create_user(client, t, "viewer")
    secret = await _enroll(client, s)
    await client.post("/v1/auth/mfa/totp/confirm", json={"code": pyotp.TOTP(secret).now()}, headers=s.headers)
    r = await client.post("/v1/auth/mfa/totp", headers=s.headers)
    assert r.status_code == 409


async def test_login_is_audited_with_ids_only(client) -> None:
    t = await create_tenant(client)
    await login(client, t.slug, t.admin_email)
    await _login(client, t.slug, t.admin_email, "nope nope nope nope")
    items = (await client.get("/v1/audit", params={"action": "auth.login"}, headers=t.admin.headers)).json()[
        "items"
    ]
    outcomes = {e["outcome"] for e in items}
    assert outcomes == {"success", "failure"}
    assert all(t.admin_email not in str(e) for e in items)
    assert all(e["actor"]["id"] == t.admin_id for e in items)
