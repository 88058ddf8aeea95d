"""The upload page (/app/upload) and its bundle (/app/static/*): what is served, as what, under which CSP.

The bundle here is a stand-in written to a temporary directory (the real one is scripts/web.sh's build
output, exercised in a real browser by tests/e2e/test_upload_page.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from gateway.app import create_app
from gateway.security.headers import API_CSP, APP_CSP
from gateway.settings import Settings
from gateway.web import controllers

JS = b"(()=>{console.log('bundle')})();\n"
CSS = b".uppy-Root{color:red}\n"


@pytest.fixture
def static_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "static"
    directory.mkdir()
    (directory / "upload.js").write_bytes(JS)
    (directory / "upload.css").write_bytes(CSS)
    monkeypatch.setattr(controllers, "STATIC_DIR", directory)
    return directory


@pytest.fixture
async def web(settings: Settings, static_dir: Path) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(app=create_app(settings)) as c:
        yield c


async def test_page_is_html_under_the_app_csp(web: AsyncTestClient[Litestar]) -> None:
    r = await web.get("/app/upload")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    csp = r.headers["content-security-policy"]
    assert csp == APP_CSP.decode()
    assert "sandbox" not in csp and "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp
    for directive in (
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ):
        assert directive in csp
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["x-content-type-options"] == "nosniff"
    body = r.text
    assert '<script defer src="/app/static/upload.js"></script>' in body
    assert '<link rel="stylesheet" href="/app/static/upload.css">' in body
    assert '<ul id="results"' in body
    # Nothing inline: every <script> has a src, no style attribute or element, no inline handler.
    assert body.count("<script") == body.count("<script defer src=")
    assert "style=" not in body and "<style" not in body and " on" not in body.replace(" one", "")


async def test_page_needs_no_credentials_and_ignores_a_bad_one(web: AsyncTestClient[Litestar]) -> None:
    r = await web.get("/app/upload", headers={"Authorization": "Bearer not-a-token"})
    assert r.status_code == 200


async def test_bundle_files_have_their_content_types(web: AsyncTestClient[Litestar]) -> None:
    js = await web.get("/app/static/upload.js")
    assert js.status_code == 200
    assert js.content == JS
    assert js.headers["content-type"] == "text/javascript; charset=utf-8"
    css = await web.get("/app/static/upload.css")
    assert css.status_code == 200
    assert css.content == CSS
    assert css.headers["content-type"] == "text/css; charset=utf-8"
    for r in (js, css):
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["content-security-policy"] == APP_CSP.decode()
        assert not r.headers.get("content-disposition", "inline").startswith("attachment")


@pytest.mark.parametrize(
    "path",
    [
        "/app/static/../../etc/passwd",
        "/app/static/..%2F..%2Fetc%2Fpasswd",
        "/app/static/%2e%2e%2fcontrollers.py",
        "/app/static/..%5c..%5cpage.py",
        "/app/static/.upload.js",
        "/app/static/upload.js.map",
        "/app/static/upload.html",
        "/app/static/missing.js",
        "/app/static/UPLOAD.JS",
        "/app/static/upload.js%00.css",
        "/app/static/",
        "/app/static/%2Fetc%2Fpasswd",
    ],
)
async def test_only_bundle_files_are_served(web: AsyncTestClient[Litestar], path: str) -> None:
    r = await web.get(path)
    # A control character in a path is refused at the edge (400) before any route sees it.
    expected = 400 if "%00" in path else 404
    assert r.status_code == expected, (path, r.status_code, r.text[:200])
    assert b"root:" not in r.content


async def test_a_symlink_out_of_the_static_dir_is_not_followed(
    web: AsyncTestClient[Litestar], static_dir: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.js"
    secret.write_text("secret")
    (static_dir / "leak.js").symlink_to(secret)
    r = await web.get("/app/static/leak.js")
    assert r.status_code == 404
    assert b"secret" not in r.content


async def test_page_is_503_with_a_problem_while_the_bundle_is_missing(
    web: AsyncTestClient[Litestar], static_dir: Path
) -> None:
    (static_dir / "upload.css").unlink()
    r = await web.get("/app/upload")
    assert r.status_code == 503
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert problem["code"] == "web_bundle_missing"
    assert "scripts/web.sh" in problem["detail"]


async def test_api_paths_keep_the_sandboxed_api_csp(web: AsyncTestClient[Litestar]) -> None:
    for path in ("/health/live", "/v1/me", "/application/upload"):
        r = await web.get(path)
        assert r.headers["content-security-policy"] == API_CSP.decode(), path
