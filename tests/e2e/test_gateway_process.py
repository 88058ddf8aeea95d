"""The gateway as a process: CLI tenant creation, login over TCP, streamed bodies, secrets kept out of logs."""

from __future__ import annotations

import json

import httpx
import pyotp

from tests.e2e.conftest import PASSWORD, cli_tenant_create, make_tenant


def test_cli_tenant_create_then_login_and_me(live_server) -> None:
    slug = "cli-" + live_server.env["FILEGATE_PORT"]
    out = cli_tenant_create(live_server.env, name="Cli Co", slug=slug, email=f"admin@{slug}.test")
    assert out.returncode == 0, out.stderr
    created = json.loads(out.stdout)  # stdout is only the JSON
    assert set(created) == {"id", "name", "slug", "admin_user_id", "created_at"}
    r = httpx.post(
        f"{live_server.url}/v1/auth/login",
        json={"tenant": slug, "email": f"admin@{slug}.test", "password": PASSWORD},
    )
    assert r.status_code == 200
    me = httpx.get(
        f"{live_server.url}/v1/me", headers={"Authorization": f"Bearer {r.json()['access_token']}"}
    )
    assert me.json()["user_id"] == created["admin_user_id"]
    again = cli_tenant_create(live_server.env, name="Cli Co", slug=slug, email=f"admin@{slug}.test")
    assert again.returncode != 0
    assert "conflict" in again.stderr


def test_cli_tenant_create_refuses_invisible_email_and_newline_slug_without_a_traceback(live_server) -> None:
    slug = "cli-bad-" + live_server.env["FILEGATE_PORT"]
    for kwargs in (
        {"slug": slug, "email": f"ad\u200bmin@{slug}.test"},
        {"slug": slug + "\n", "email": f"admin@{slug}.test"},
    ):
        out = cli_tenant_create(live_server.env, name="Cli Bad", **kwargs)
        assert out.returncode == 2, out.stderr
        assert "Traceback" not in out.stderr
        assert out.stdout == ""


def test_chunked_ten_megabyte_body_is_refused_without_reading_it_all(live_server) -> None:
    def chunks():
        for _ in range(10):
            yield b"a" * (1024 * 1024)

    r = httpx.post(
        f"{live_server.url}/v1/auth/login",
        content=chunks(),
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert r.status_code == 413
    assert r.json()["code"] == "body_too_large"


def test_declared_oversize_body_is_refused_before_reading(live_server) -> None:
    r = httpx.post(
        f"{live_server.url}/v1/auth/login",
        content=b"{}",
        headers={"content-type": "application/json", "content-length": "2"},
    )
    assert r.status_code in (400, 401)
    big = b"{" + b" " * (2 * 1024 * 1024) + b"}"
    r = httpx.post(
        f"{live_server.url}/v1/auth/login", content=big, headers={"content-type": "application/json"}
    )
    assert r.status_code == 413


def test_no_secret_reaches_the_logs(live_server) -> None:
    """A full login / TOTP / refresh / API key / logout flow, then every log line of the process is searched."""
    url = live_server.url
    t = make_tenant(live_server)
    h = {"Authorization": f"Bearer {t.access_token}"}
    secrets = {PASSWORD, t.access_token, t.refresh_token}

    enroll = httpx.post(f"{url}/v1/auth/mfa/totp", headers=h).json()
    secrets.add(enroll["secret"])
    totp = pyotp.TOTP(enroll["secret"])
    confirmed = httpx.post(f"{url}/v1/auth/mfa/totp/confirm", json={"code": totp.now()}, headers=h).json()
    secrets.update(confirmed["recovery_codes"])
    # Failures carry the password in the request too.
    httpx.post(
        f"{url}/v1/auth/login", json={"tenant": t.slug, "email": t.admin_email, "password": PASSWORD + "x"}
    )
    login = httpx.post(
        f"{url}/v1/auth/login",
        json={
            "tenant": t.slug,
            "email": t.admin_email,
            "password": PASSWORD,
            "totp": confirmed["recovery_codes"][0],
        },
    ).json()
    secrets.update({login["access_token"], login["refresh_token"]})
    refreshed = httpx.post(f"{url}/v1/auth/refresh", json={"refresh_token": login["refresh_token"]}).json()
    secrets.update({refreshed["access_token"], refreshed["refresh_token"]})
    httpx.post(f"{url}/v1/auth/refresh", json={"refresh_token": login["refresh_token"]})  # reuse
    # The reuse burnt that family, its access tokens included: the tenant's first session goes on.
    key = httpx.post(f"{url}/v1/api-keys", json={"name": "k", "scopes": ["users.read"]}, headers=h)
    assert key.status_code == 201, key.text
    secrets.add(key.json()["key"])
    assert (
        httpx.get(f"{url}/v1/users", headers={"Authorization": f"Bearer {key.json()['key']}"}).status_code
        == 200
    )
    httpx.get(f"{url}/v1/me", headers={"Authorization": "Bearer " + key.json()["key"][:-2] + "zz"})
    httpx.get(
        f"{url}/v1/me?token={refreshed['access_token']}",
        headers={"Authorization": f"Bearer {refreshed['access_token']}"},
    )
    assert (
        httpx.post(f"{url}/v1/auth/logout", json={"refresh_token": t.refresh_token}, headers=h).status_code
        == 204
    )

    text = live_server.log_text()
    assert '"auth.login"' in text  # the flow was logged at all
    assert "api_key.use" in text
    found = [s[:12] for s in secrets if s in text]
    assert found == [], f"secrets in logs: {found}"
    # The secret halves of credentials, too (a prefix-only redaction would leak them).
    for cred in (key.json()["key"], refreshed["refresh_token"]):
        assert cred.rsplit("_", 1)[1] not in text


def _raw_request(url: str, head: str, body: bytes, *, shut: bool = True) -> bytes:
    import socket
    from urllib.parse import urlparse

    parsed = urlparse(url)
    with socket.create_connection((parsed.hostname, parsed.port)) as s:
        s.sendall(head.encode() + body)
        if shut:
            s.shutdown(socket.SHUT_WR)
        s.settimeout(10)
        chunks = []
        try:
            while data := s.recv(65536):
                chunks.append(data)
        except OSError:
            pass
    return b"".join(chunks)


def test_lying_content_length_stores_nothing(live_server) -> None:
    """A body shorter than its Content-Length (connection closed early) never becomes an upload."""
    t = make_tenant(live_server)
    head = (
        f"POST /v1/uploads HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {t.access_token}\r\n"
        f'Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename="a.bin"\r\n'
        f"Content-Length: 100000\r\n\r\n"
    )
    answer = _raw_request(live_server.url, head, b"x" * 5000)
    assert b" 500 " not in answer.split(b"\r\n", 1)[0]
    listed = httpx.get(f"{live_server.url}/v1/uploads", headers={"Authorization": f"Bearer {t.access_token}"})
    assert listed.json()["items"] == []
    quarantine = __import__("pathlib").Path(live_server.env["FILEGATE_DATA_DIR"]) / "quarantine" / t.id
    assert not quarantine.exists() or list(quarantine.iterdir()) == []
