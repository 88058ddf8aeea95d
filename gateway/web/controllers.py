"""GET /app/upload (the upload page) and GET /app/static/{name} (its bundle).

Both are public: the page and its script hold no data; everything it shows comes from the API with the
browser's session. Their CSP is the app one (gateway/security/headers.py, paths under /app/).
"""

from __future__ import annotations

import re
from pathlib import Path

import anyio
from litestar import MediaType, Response, get
from litestar.response import File

from gateway.errors import NotFound, ServiceUnavailable
from gateway.security.authn import EXCLUDE_OPT
from gateway.web.page import UPLOAD_PAGE

# Build output of scripts/web.sh (package data in an installed wheel; a build stage in the Dockerfile).
STATIC_DIR = Path(__file__).resolve().parent / "static"
BUNDLE = ("upload.js", "upload.css")
# File adds `; charset=utf-8` to text types itself.
CONTENT_TYPES = {"js": "text/javascript", "css": "text/css"}
# One path segment of plain characters with a known extension: no dot-dot, slash, backslash or
# dot-file can match, and the resolved path is checked to sit in STATIC_DIR on top.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}\.(js|css)")
# The bundle's names carry no content hash, so a browser revalidates; with a hash it could keep them.
CACHE_CONTROL = "no-cache"
PUBLIC = {EXCLUDE_OPT: True}


class WebBundleMissing(ServiceUnavailable):
    code = "web_bundle_missing"
    title = "The upload page is not built"


async def _static_path(name: str) -> Path | None:
    if not _NAME.fullmatch(name):
        return None
    root = await anyio.Path(STATIC_DIR).resolve()
    path = await (root / name).resolve()
    if path.parent != root or not await path.is_file():
        return None
    return Path(path)


@get("/app/upload", opt=PUBLIC, include_in_schema=False)
async def upload_page() -> Response[bytes]:
    """The upload page; 503 while its bundle is not built, since the page is nothing without it."""
    for name in BUNDLE:
        if await _static_path(name) is None:
            raise WebBundleMissing(f"The browser bundle ({name}) is missing: run scripts/web.sh")
    return Response(UPLOAD_PAGE, media_type=MediaType.HTML, headers={"Cache-Control": CACHE_CONTROL})


@get("/app/static/{name:str}", opt=PUBLIC, include_in_schema=False)
async def static_asset(name: str) -> File:
    """A file of the built bundle, and nothing else."""
    path = await _static_path(name)
    if path is None:
        raise NotFound("No such file")
    return File(
        path=path,
        media_type=CONTENT_TYPES[path.suffix.removeprefix(".")],
        content_disposition_type="inline",
        filename=path.name,
        headers={"Cache-Control": CACHE_CONTROL},
    )
