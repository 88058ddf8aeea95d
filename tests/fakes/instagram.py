"""A local stand-in for the Instagram Graph API's content-publishing endpoints (graph.instagram.com).

It speaks the subset Filegate uses, with the real paths, answers and error shape
(`{"error": {"message", "type", "code", "error_subcode", "fbtrace_id"}}`):

- GET  /{version}/{ig-user-id}?fields=id,username
- POST /{version}/{ig-user-id}/media            image_url | video_url + media_type=REELS|VIDEO|STORIES, caption
- GET  /{version}/{container-id}?fields=status_code,status
- POST /{version}/{ig-user-id}/media_publish    creation_id
- GET  /{version}/{ig-user-id}/content_publishing_limit
- GET  /refresh_access_token?grant_type=ig_refresh_token&access_token=...

Like Instagram, creating a container makes the fake FETCH the media URL itself. An image that cannot be
fetched (or is not a JPEG) fails at once with 9004/2207052, as Instagram does, and its message echoes the URL
(so a test proves the publisher never passes messages on); a video is fetched as well, and its container
goes IN_PROGRESS for `in_progress_polls` polls, then FINISHED or ERROR. The token is accepted as a bearer
header, a query parameter or a form field; every request is recorded with whether a token (current or
retired) appeared in its URL.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import re
import secrets
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

MAX_MEDIA = 50 * 1024 * 1024
QUOTA_TOTAL = 50
_VERSION = re.compile(r"^v\d{1,2}\.\d{1,2}$")


@dataclass
class Recorded:
    method: str
    path: str  # without the query
    raw_url: str  # the request target as sent: path and query
    token_in_url: bool
    auth: str | None  # "header", "query", "form" or None


@dataclass
class Container:
    id: str
    kind: str  # IMAGE, REELS, VIDEO, STORIES
    url: str
    caption: str | None
    status_code: str = "IN_PROGRESS"
    status: str | None = None
    polls_left: int = 0
    outcome: str = "FINISHED"  # what the container becomes once polls_left reaches 0
    content: bytes = b""
    content_type: str | None = None


@dataclass
class PublishedMedia:
    media_id: str
    container_id: str
    kind: str
    url: str
    caption: str | None
    content: bytes
    sha256: str
    content_type: str | None


@dataclass
class FakeInstagram:
    ig_user_id: str = "17841400000000001"
    username: str = "filegate.test"
    token: str = field(default_factory=lambda: "IGAA" + secrets.token_urlsafe(32))
    in_progress_polls: int = 2
    # --- switches a test flips --------------------------------------------------------------------------
    throttle_next: int = 0  # the next N calls answer a rate-limit error
    throttle_code: int = 4  # 4 (app), 17 (user), 32 (page), 613, 80002 (Instagram business use case)
    throttle_status: int = 400
    throttle_retry_minutes: int | None = (
        5  # sent as X-Business-Use-Case-Usage estimated_time_to_regain_access
    )
    token_expired: bool = False
    fail_media_fetch: bool = False  # the fetch behaves as if the URL answered 403
    lose_next_publish_answer: bool = False  # media_publish publishes, then answers 500
    # --- what happened --------------------------------------------------------------------------------
    requests: list[Recorded] = field(default_factory=list)
    containers: dict[str, Container] = field(default_factory=dict)
    published: dict[str, PublishedMedia] = field(default_factory=dict)
    fetched_urls: list[str] = field(default_factory=list)
    retired_tokens: list[str] = field(default_factory=list)
    url: str = ""

    def __post_init__(self) -> None:
        self._lock = threading.RLock()
        self._ids = itertools.count(17900000000000001)

    # --- helpers for tests ----------------------------------------------------------------------------
    def expire_token(self) -> None:
        with self._lock:
            self.token_expired = True

    def throttle(
        self, calls: int, *, code: int = 4, status: int = 400, retry_minutes: int | None = 5
    ) -> None:
        with self._lock:
            self.throttle_next = calls
            self.throttle_code = code
            self.throttle_status = status
            self.throttle_retry_minutes = retry_minutes

    def tokens_in_urls(self) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.token_in_url]

    def paths(self) -> list[str]:
        with self._lock:
            return [f"{r.method} {r.path}" for r in self.requests]

    def _next_id(self) -> str:
        return str(next(self._ids))

    # --- the API --------------------------------------------------------------------------------------
    def handle(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        parts = urlsplit(target)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        form: dict[str, str] = {}
        if method == "POST":
            ctype = headers.get("content-type", "")
            if ctype.startswith("application/x-www-form-urlencoded"):
                form = dict(parse_qsl(body.decode(), keep_blank_values=True))
            elif ctype.startswith("application/json") and body:
                loaded = json.loads(body)
                form = {k: v if isinstance(v, str) else json.dumps(v) for k, v in loaded.items()}
        params = {**query, **form}
        token, auth = self._token_of(headers, query, form)
        with self._lock:
            known = [self.token, *self.retired_tokens]
            self.requests.append(Recorded(method, parts.path, target, any(t in target for t in known), auth))
            return self._route(method, parts.path, params, token)

    @staticmethod
    def _token_of(
        headers: dict[str, str], query: dict[str, str], form: dict[str, str]
    ) -> tuple[str | None, str | None]:
        header = headers.get("authorization", "")
        if header.lower().startswith(("bearer ", "oauth ")):
            return header.split(" ", 1)[1].strip(), "header"
        if "access_token" in query:
            return query["access_token"], "query"
        if "access_token" in form:
            return form["access_token"], "form"
        return None, None

    def _route(
        self, method: str, path: str, params: dict[str, str], token: str | None
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        if self.throttle_next > 0:
            self.throttle_next -= 1
            return self._throttled()
        segments = [s for s in path.split("/") if s]
        if segments == ["refresh_access_token"] and method == "GET":
            return self._refresh(params, token)
        if token is None:
            return _error(400, "An active access token must be used to query information.", 2500, None)
        if token != self.token:
            return _error(400, "Invalid OAuth access token - Cannot parse access token", 190, None)
        if self.token_expired:
            return _error(400, "Error validating access token: Session has expired.", 190, 463)
        if len(segments) < 2 or not _VERSION.match(segments[0]):
            return _error(400, "Unknown path components", 2500, None)
        node, edge = segments[1], segments[2] if len(segments) > 2 else None
        if node == self.ig_user_id:
            match method, edge:
                case "GET", None:
                    fields = params.get("fields", "id").split(",")
                    known = {"id": self.ig_user_id, "username": self.username}
                    return 200, {k: known[k] for k in fields if k in known}, {}
                case "POST", "media":
                    return self._create(params)
                case "POST", "media_publish":
                    return self._publish(params)
                case "GET", "content_publishing_limit":
                    return 200, {"data": [self._quota()]}, {}
        if node in self.containers and method == "GET" and edge is None:
            return self._container_status(self.containers[node])
        return _error(
            400,
            f"Unsupported {method.lower()} request. Object with ID '{node}' does not exist",
            100,
            33,
        )

    def _throttled(self) -> tuple[int, dict[str, Any], dict[str, str]]:
        headers = {"X-App-Usage": json.dumps({"call_count": 100, "total_cputime": 12, "total_time": 40})}
        if self.throttle_retry_minutes is not None:
            headers["X-Business-Use-Case-Usage"] = json.dumps(
                {
                    self.ig_user_id: [
                        {
                            "type": "instagram",
                            "call_count": 100,
                            "total_cputime": 10,
                            "total_time": 20,
                            "estimated_time_to_regain_access": self.throttle_retry_minutes,
                        }
                    ]
                }
            )
        messages = {
            4: "Application request limit reached",
            17: "User request limit reached",
            32: "Page request limit reached",
            613: "Calls to this api have exceeded the rate limit.",
            80002: "There have been too many calls to this Instagram account.",
        }
        status, body, _ = _error(
            self.throttle_status,
            messages.get(self.throttle_code, "Rate limited"),
            self.throttle_code,
            2446079 if self.throttle_code == 80002 else None,
        )
        return status, body, headers

    def _refresh(
        self, params: dict[str, str], token: str | None
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        if params.get("grant_type") != "ig_refresh_token":
            return _error(400, "Unsupported grant type", 100, None)
        if token != self.token:
            return _error(400, "Invalid OAuth access token - Cannot parse access token", 190, None)
        if self.token_expired:
            return _error(400, "Error validating access token: Session has expired.", 190, 463)
        self.retired_tokens.append(self.token)
        self.token = "IGAA" + secrets.token_urlsafe(32)
        return 200, {"access_token": self.token, "token_type": "bearer", "expires_in": 5183944}, {}

    def _create(self, params: dict[str, str]) -> tuple[int, dict[str, Any], dict[str, str]]:
        media_type = params.get("media_type", "").upper() or "IMAGE"
        wants: tuple[str, ...]
        if "image_url" in params and media_type in ("IMAGE", "STORIES"):
            url, wants = params["image_url"], ("image/jpeg",)
        elif "video_url" in params and media_type in ("REELS", "VIDEO", "STORIES"):
            url, wants = params["video_url"], ("video/mp4", "video/quicktime")
        else:
            return _error(400, "The parameter image_url or video_url is required.", 100, 2207002)
        content, content_type = self._fetch(url)
        ok = content is not None and _sniff(content) in wants
        container = Container(self._next_id(), media_type, url, params.get("caption"))
        if not ok and "image_url" in params:
            # Instagram fetches images while creating the container and fails the call itself.
            return _error(
                400,
                "Only photo or video can be accepted as media type.",
                9004,
                2207052,
                user_title="Media download has failed.",
                user_msg=f"The media could not be fetched from this uri: {url}",
            )
        container.content = content or b""
        container.content_type = content_type
        container.polls_left = self.in_progress_polls
        container.outcome = "FINISHED" if ok else "ERROR"
        self.containers[container.id] = container
        return 200, {"id": container.id}, {}

    def _fetch(self, url: str) -> tuple[bytes | None, str | None]:
        self.fetched_urls.append(url)
        if self.fail_media_fetch or not url.startswith(("http://", "https://")):
            return None, None
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(url, timeout=10) as response:
                if response.status != 200:
                    return None, None
                content = response.read(MAX_MEDIA + 1)
                ctype = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
        except (urllib.error.URLError, OSError, ValueError):
            return None, None
        if len(content) > MAX_MEDIA or ctype not in ("image/jpeg", "video/mp4", "video/quicktime"):
            return None, ctype
        return content, ctype

    def _container_status(self, container: Container) -> tuple[int, dict[str, Any], dict[str, str]]:
        if container.status_code == "IN_PROGRESS":
            if container.polls_left > 0:
                container.polls_left -= 1
            else:
                container.status_code = container.outcome
                if container.outcome == "ERROR":
                    container.status = "Error: 2207052"  # the subcode: media download failed
                else:
                    container.status = "Finished: Media has been uploaded and it is ready to be published."
        body: dict[str, Any] = {"status_code": container.status_code, "id": container.id}
        if container.status is not None:
            body["status"] = container.status
        elif container.status_code == "IN_PROGRESS":
            body["status"] = "In Progress: Media is still being processed."
        return 200, body, {}

    def _publish(self, params: dict[str, str]) -> tuple[int, dict[str, Any], dict[str, str]]:
        container = self.containers.get(params.get("creation_id", ""))
        if container is None:
            return _error(400, "Media ID is not available", 9007, 2207006)
        if container.status_code == "PUBLISHED":
            return _error(400, "The media has already been published", 9007, 2207008)
        if container.status_code != "FINISHED":
            return _error(400, "Media ID is not available", 9007, 2207027)
        if self._quota()["quota_usage"] >= QUOTA_TOTAL:
            return _error(400, "Application request limit reached", 9, 2207042)
        container.status_code = "PUBLISHED"
        container.status = "Published: Media has been successfully published."
        media = PublishedMedia(
            media_id=self._next_id(),
            container_id=container.id,
            kind=container.kind,
            url=container.url,
            caption=container.caption,
            content=container.content,
            sha256=hashlib.sha256(container.content).hexdigest(),
            content_type=container.content_type,
        )
        self.published[media.media_id] = media
        if self.lose_next_publish_answer:
            self.lose_next_publish_answer = False
            return _error(500, "An unknown error occurred", 1, 99)
        return 200, {"id": media.media_id}, {}

    def _quota(self) -> dict[str, Any]:
        return {
            "quota_usage": len(self.published),
            "config": {"quota_total": QUOTA_TOTAL, "quota_duration": 86400},
        }


def _sniff(content: bytes) -> str | None:
    if content.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if content[4:8] == b"ftyp":
        return "video/quicktime" if content[8:10] == b"qt" else "video/mp4"
    return None


def _error(
    status: int,
    message: str,
    code: int,
    subcode: int | None,
    *,
    user_title: str | None = None,
    user_msg: str | None = None,
) -> tuple[int, dict[str, Any], dict[str, str]]:
    error: dict[str, Any] = {
        "message": message,
        "type": "OAuthException" if code in (190, 100, 9004, 2500, 10) else "IGApiException",
        "code": code,
        "fbtrace_id": "A" + secrets.token_hex(10),
    }
    if subcode is not None:
        error["error_subcode"] = subcode
    if user_title is not None:
        error["error_user_title"] = user_title
    if user_msg is not None:
        error["error_user_msg"] = user_msg
    return status, {"error": error}, {}


def _handler(fake: FakeInstagram) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, payload, extra = fake.handle(self.command, self.path, headers, body)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            for name, value in extra.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: the requests are recorded instead

    return Handler


@contextmanager
def _serving(handler: type[BaseHTTPRequestHandler], name: str) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name=name, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@contextmanager
def running(fake: FakeInstagram) -> Iterator[FakeInstagram]:
    """Serve `fake` on 127.0.0.1 at a free port (`fake.url`) for the duration of the block."""
    with _serving(_handler(fake), "fake-instagram") as url:
        fake.url = url
        yield fake


@dataclass
class MediaHost:
    """The gateway's side of a publish: media behind signed URLs, fetched by (the fake) Instagram."""

    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)  # name -> (content, content type)
    hits: list[str] = field(default_factory=list)
    url: str = ""

    def __post_init__(self) -> None:
        self._key = secrets.token_bytes(32)

    def add(self, name: str, content: bytes, content_type: str) -> str:
        """Serve `content` under `name`; answers its signed URL."""
        self.files[name] = (content, content_type)
        return f"{self.url}/media/{name}?expires=4102444800&signature={self._sign(name)}"

    def _sign(self, name: str) -> str:
        return hmac.new(self._key, name.encode(), hashlib.sha256).hexdigest()

    def answer(self, target: str) -> tuple[int, bytes, str]:
        parts = urlsplit(target)
        self.hits.append(parts.path)
        name = parts.path.removeprefix("/media/")
        query = dict(parse_qsl(parts.query))
        if name not in self.files:
            return 404, b"not found", "text/plain"
        if not hmac.compare_digest(query.get("signature", ""), self._sign(name)):
            return 403, b"bad signature", "text/plain"
        content, ctype = self.files[name]
        return 200, content, ctype


@contextmanager
def hosting(host: MediaHost) -> Iterator[MediaHost]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            status, data, ctype = host.answer(self.path)
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    with _serving(Handler, "media-host") as url:
        host.url = url
        yield host
