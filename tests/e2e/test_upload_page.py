"""The upload page in a real browser: Debian's chromium driven by tests/e2e/browser/run.mjs (playwright-core).

A real gateway process serves the page and the bundle scripts/web.sh built, under the real app CSP. This
file checks the signed-out page; tests/e2e/test_browser_sign_in.py signs in through a real OpenID Connect
provider and uploads to `clean` and `infected`. The helpers here (`browse`, `browser_ready`) serve both.

Needs /usr/bin/chromium and tests/e2e/browser/node_modules: scripts/browser.sh installs both and
scripts/test.sh runs it; skipped only when node is not on PATH.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import conftest
from tests.e2e.browsing import browse, unexpected_errors
from tests.e2e.conftest import LiveServer, server_env, start_server, stop_all

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        shutil.which("node") is None, reason="node is not on PATH: the browser tests need Node.js"
    ),
]


@pytest.fixture(scope="session")
def web_server(
    test_db: conftest.TestDatabase, tmp_path_factory: pytest.TempPathFactory, browser_ready: Path
) -> Iterator[LiveServer]:
    data_dir = tmp_path_factory.mktemp("web")
    env = server_env(test_db, data_dir)
    log_path = data_dir / "gateway.log"
    proc = start_server(env, log_path)
    try:
        yield LiveServer(url=f"http://127.0.0.1:{env['FILEGATE_PORT']}", log_path=log_path, env=env)
    finally:
        stop_all([proc])


def test_page_renders_signed_out_in_a_real_browser(web_server: LiveServer, tmp_path: Path) -> None:
    # Without the session API (401 or 404 today) the page is signed out; provider and tenant in the
    # page's query build the sign-in link.
    shot = tmp_path / "upload-signed-out.png"
    result = browse(
        web_server,
        [
            {"action": "goto", "url": "/app/upload?provider=corp&tenant=acme"},
            {"action": "waitFor", "selector": ".uppy-Dashboard"},
            {"action": "waitFor", "selector": "#session[data-auth='signed-out']"},
            {
                "action": "waitFor",
                "selector": "a#sign-in[href='/v1/auth/oidc/corp/login?tenant=acme&redirect_to=%2Fapp%2Fupload']",
            },
            {"action": "waitFor", "selector": "#results[data-ready='true']", "state": "attached"},
            {"action": "text", "selector": "#session", "name": "session"},
            {"action": "screenshot", "path": str(shot)},
        ],
        tmp_path,
    )
    assert result["url"] == f"{web_server.url}/app/upload?provider=corp&tenant=acme"
    assert "not signed in" in result["texts"]["session"]
    assert unexpected_errors(result) == []
    assert shot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    # The page, its script and its style came from the gateway under the app CSP (no CDN, nothing inline).
    assert not [r for r in result["failedRequests"] if "/app/" in r["url"]]
