"""The whole browser path, for real: Chromium signs in through the certified OpenID Connect provider
(oidc-provider, its own login form), lands on /app/upload with the session cookie, uploads a PNG through
Uppy + tus and sees it reach `clean`, then the EICAR test file and sees `infected`; a screenshot of each
end state. A real gateway process, a real worker process, the real clamd, PostgreSQL and Redis.

The browser reaches the gateway as http://localhost:<port>: a `__Host-` cookie must be Secure, and
Chromium treats localhost as a secure context.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from scanning import samples
from tests import conftest
from tests.e2e.browsing import browse, unexpected_errors
from tests.e2e.conftest import LiveServer, make_tenant, server_env, start_server
from tests.oidc import RunningOidc

EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


@pytest.fixture
def stack(
    test_db: conftest.TestDatabase, tmp_path: Path, clamd_url: str, browser_ready: Path
) -> Iterator[LiveServer]:
    """A gateway (reached as localhost) and a worker on the same database, Redis namespace and keys."""
    data_dir = tmp_path / "var"
    env = server_env(test_db, data_dir, FILEGATE_CLAMD_URL=clamd_url, FILEGATE_CONNECTOR_ALLOW_PRIVATE="true")
    env["FILEGATE_PUBLIC_URL"] = f"http://localhost:{env['FILEGATE_PORT']}"
    gateway = start_server(env, tmp_path / "gateway.log")
    with (tmp_path / "worker.log").open("wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "worker"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        yield LiveServer(url=env["FILEGATE_PUBLIC_URL"], log_path=tmp_path / "gateway.log", env=env)
    finally:
        for proc in (worker, gateway):
            proc.terminate()
        for proc in (worker, gateway):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_sign_in_with_oidc_and_upload_clean_and_infected_files(
    stack: LiveServer, oidc_provider: RunningOidc, tmp_path: Path
) -> None:
    tenant = make_tenant(stack)
    client = oidc_provider.register_client(f"{stack.url}/v1/auth/oidc/corp/callback")
    admin = {"Authorization": f"Bearer {tenant.access_token}"}
    r = httpx.put(
        f"{stack.url}/v1/identity-providers/corp",
        json={
            "issuer": oidc_provider.issuer,
            "client_id": client.client_id,
            "client_secret": client.client_secret,
            "create_users": True,
            "default_role": "user",
        },
        headers=admin,
    )
    assert r.status_code == 200, r.text
    alice = oidc_provider.users["alice"]
    picture = tmp_path / "holiday.png"
    picture.write_bytes(samples.png_bytes())
    eicar = tmp_path / "eicar.txt"
    eicar.write_bytes(EICAR)
    clean_shot, infected_shot = tmp_path / "clean.png", tmp_path / "infected.png"
    input_selector = ".uppy-Dashboard-input:not([webkitdirectory])"

    result = browse(
        stack,
        [
            {
                "action": "goto",
                "url": f"/v1/auth/oidc/corp/login?tenant={tenant.slug}&redirect_to=/app/upload",
            },
            # The provider's own login form.
            {"action": "waitFor", "selector": "input[name='login']"},
            {"action": "fill", "selector": "input[name='login']", "text": alice.username},
            {"action": "fill", "selector": "input[name='password']", "text": alice.password},
            {"action": "click", "selector": "button[type='submit']"},
            # Back on the gateway, signed in by the session cookie.
            {"action": "waitFor", "selector": "#session[data-auth='signed-in']", "timeout": 30000},
            {"action": "setInputFiles", "selector": input_selector, "files": [str(picture)]},
            {"action": "click", "selector": ".uppy-StatusBar-actionBtn--upload"},
            {"action": "waitFor", "selector": "li[data-state='clean']", "timeout": 60000},
            {"action": "text", "selector": "#results", "name": "first"},
            {"action": "screenshot", "path": str(clean_shot), "fullPage": True},
            # A fresh page (still signed in: the cookie) for the second file.
            {"action": "goto", "url": "/app/upload"},
            {"action": "waitFor", "selector": "#session[data-auth='signed-in']"},
            {"action": "setInputFiles", "selector": input_selector, "files": [str(eicar)]},
            {"action": "click", "selector": ".uppy-StatusBar-actionBtn--upload"},
            {"action": "waitFor", "selector": "li[data-state='infected']", "timeout": 60000},
            {"action": "text", "selector": "#results", "name": "second"},
            {"action": "screenshot", "path": str(infected_shot), "fullPage": True},
        ],
        tmp_path,
    )
    assert result["url"].startswith(f"{stack.url}/app/upload")
    # Only our pages count: the provider's login page asks for web fonts this machine cannot reach.
    ours = [e for e in unexpected_errors(result) if str(e.get("url", stack.url)).startswith(stack.url)]
    assert ours == [], ours
    assert "holiday.png" in result["texts"]["first"] and "clean" in result["texts"]["first"]
    assert "eicar.txt" in result["texts"]["second"] and "infected" in result["texts"]["second"]
    for shot in (clean_shot, infected_shot):
        assert shot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and shot.stat().st_size > 5000

    # What the server recorded: one user created with the default role, signed in through OIDC, and the
    # two verdicts; the infected file is never served.
    users = httpx.get(f"{stack.url}/v1/users", headers=admin).json()["items"]
    created = [u for u in users if u["email"] == alice.email]
    assert [u["role"] for u in created] == ["user"]
    uploads = httpx.get(f"{stack.url}/v1/uploads", headers=admin).json()["items"]
    states = {u["filename"]: u["state"] for u in uploads}
    assert states == {"holiday.png": "clean", "eicar.txt": "infected"}
    infected = next(u for u in uploads if u["state"] == "infected")
    assert infected["owner_id"] == created[0]["id"]
    assert httpx.get(f"{stack.url}/v1/uploads/{infected['id']}/content", headers=admin).status_code == 409
    logins = httpx.get(f"{stack.url}/v1/audit", params={"action": "auth.login"}, headers=admin).json()[
        "items"
    ]
    assert any(e["details"].get("method") == "oidc" and e["outcome"] == "success" for e in logins)
