"""The Instagram publisher against a local fake of the Graph API that fetches our signed media URLs itself."""

from __future__ import annotations

import hashlib
import socket
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from connectors.base import (
    AuthFailed,
    ConnectorError,
    Published,
    Publisher,
    Rejected,
    Throttled,
    TokenRefresher,
    Unavailable,
)
from connectors.factory import Endpoints, open_connector
from connectors.instagram import InstagramPublisher, graph_error
from connectors.paths import ObjectRoot
from connectors.schemas import InstagramConfig, InstagramSecrets
from scanning import samples
from tests.fakes.instagram import FakeInstagram, MediaHost
from tests.fakes.ssrf import internal_target, redirector

JPEG = samples.jpeg_bytes()
MP4 = samples.mp4_bytes()


def make_publisher(
    fake: FakeInstagram, tmp_path: Path, *, token: str | None = None, **options: Any
) -> InstagramPublisher:
    options = {"poll_interval": 0.01, "max_poll_interval": 0.05, "max_wait": 5.0, **options}
    return InstagramPublisher(
        InstagramConfig(ig_user_id=fake.ig_user_id, graph_api_version="v21.0"),
        InstagramSecrets(access_token=token or fake.token),
        Endpoints(local_root=tmp_path, instagram_url=fake.url),
        **options,
    )


def assert_safe(exc: ConnectorError, *secrets: str) -> None:
    """Nothing a caller could show or log holds a secret or the Graph message."""
    shown = [exc.detail, str(exc), repr(exc), *map(str, exc.args)]
    for secret in secrets:
        for text in shown:
            assert secret not in text
    assert exc.__cause__ is None  # httpx errors (which carry the request URL) are not chained


def assert_no_token_in_urls(fake: FakeInstagram) -> None:
    leaked = [r for r in fake.tokens_in_urls() if r.path != "/refresh_access_token"]
    assert leaked == []
    assert all(r.auth == "header" for r in fake.requests if r.path != "/refresh_access_token")


# --- publishing ---------------------------------------------------------------------------------------
async def test_publishes_a_jpeg_that_instagram_fetched_byte_for_byte(
    instagram_fake: FakeInstagram, instagram_media: MediaHost, instagram_publisher: InstagramPublisher
) -> None:
    url = instagram_media.add("photo.jpg", JPEG, "image/jpeg")

    result = await instagram_publisher.publish(media_url=url, media_type="image/jpeg", caption="hello #fg")

    assert isinstance(result, Published)
    media = instagram_fake.published[result.media_id]
    assert media.container_id == result.container_id
    assert media.kind == "IMAGE"
    assert media.url == url
    assert media.caption == "hello #fg"
    assert media.content == JPEG
    assert media.sha256 == hashlib.sha256(JPEG).hexdigest()
    assert instagram_media.hits == ["/media/photo.jpg"]
    paths = instagram_fake.paths()
    assert paths[0] == f"POST /v21.0/{instagram_fake.ig_user_id}/media"
    assert paths[-1] == f"POST /v21.0/{instagram_fake.ig_user_id}/media_publish"
    # It polled through the IN_PROGRESS answers before publishing.
    assert paths.count(f"GET /v21.0/{result.container_id}") == instagram_fake.in_progress_polls + 1
    assert_no_token_in_urls(instagram_fake)
    # The signed media URL went in the body, never in a URL that proxies or access logs keep.
    assert all("signature=" not in r.raw_url for r in instagram_fake.requests)


@pytest.mark.parametrize(("name", "media_type"), [("reel.mp4", "video/mp4"), ("reel.mov", "video/quicktime")])
async def test_publishes_a_video_as_a_reel(
    instagram_fake: FakeInstagram,
    instagram_media: MediaHost,
    instagram_publisher: InstagramPublisher,
    name: str,
    media_type: str,
) -> None:
    url = instagram_media.add(name, MP4, media_type)

    result = await instagram_publisher.publish(media_url=url, media_type=media_type, caption=None)

    media = instagram_fake.published[result.media_id]
    assert media.kind == "REELS"
    assert media.caption is None
    assert media.sha256 == hashlib.sha256(MP4).hexdigest()
    assert_no_token_in_urls(instagram_fake)


async def test_publishing_the_same_upload_twice_makes_two_posts(
    instagram_fake: FakeInstagram, instagram_media: MediaHost, instagram_publisher: InstagramPublisher
) -> None:
    url = instagram_media.add("photo.jpg", JPEG, "image/jpeg")
    first = await instagram_publisher.publish(media_url=url, media_type="image/jpeg", caption=None)
    second = await instagram_publisher.publish(media_url=url, media_type="image/jpeg", caption=None)
    assert first.container_id != second.container_id
    assert len(instagram_fake.published) == 2
    assert await instagram_publisher.publishing_limit() == (2, 50)


@pytest.mark.parametrize(
    "media_type", ["image/png", "image/gif", "image/webp", "application/pdf", "video/webm", "", "jpeg"]
)
async def test_unsupported_type_is_rejected_before_any_call(
    instagram_fake: FakeInstagram,
    instagram_media: MediaHost,
    instagram_publisher: InstagramPublisher,
    media_type: str,
) -> None:
    url = instagram_media.add("picture.png", samples.png_bytes(), "image/png")
    with pytest.raises(Rejected) as caught:
        await instagram_publisher.publish(media_url=url, media_type=media_type, caption=None)
    assert caught.value.detail == "Instagram accepts JPEG images and MP4/MOV videos"
    assert instagram_fake.requests == []
    assert instagram_media.hits == []


async def test_media_type_parameters_and_case_do_not_matter(
    instagram_fake: FakeInstagram, instagram_media: MediaHost, instagram_publisher: InstagramPublisher
) -> None:
    url = instagram_media.add("photo.jpg", JPEG, "image/jpeg")
    result = await instagram_publisher.publish(media_url=url, media_type="Image/JPEG; q=1", caption=None)
    assert instagram_fake.published[result.media_id].kind == "IMAGE"


# --- media Instagram cannot use -------------------------------------------------------------------------
async def test_image_fetch_failure_is_rejected_without_echoing_the_url(
    instagram_fake: FakeInstagram, instagram_media: MediaHost, instagram_publisher: InstagramPublisher
) -> None:
    url = instagram_media.add("photo.jpg", JPEG, "image/jpeg")
    instagram_fake.fail_media_fetch = True

    with pytest.raises(Rejected) as caught:
        await instagram_publisher.publish(media_url=url, media_type="image/jpeg", caption=None)

    assert caught.value.detail == "Instagram refused the request (code 9004/2207052)"
    assert_safe(caught.value, url, url.split("signature=")[1], instagram_fake.token, "could not be fetched")
    assert instagram_fake.published == {}


@pytest.mark.parametrize(
    ("served", "content_type", "broken_signature"),
    [
        (JPEG, "image/jpeg", True),  # the signed URL is refused (403)
        (samples.png_bytes(), "image/jpeg", False),  # claims JPEG, is not
        (JPEG, "text/html", False),  # wrong content type
    ],
    ids=["signature-refused", "png-posing-as-jpeg", "html-content-type"],
)
async def test_an_image_instagram_cannot_fetch_or_read_is_rejected(
    instagram_fake: FakeInstagram,
    instagram_media: MediaHost,
    instagram_publisher: InstagramPublisher,
    served: bytes,
    content_type: str,
    broken_signature: bool,
) -> None:
    url = instagram_media.add("photo.jpg", served, content_type)
    if broken_signature:
        url = url[:-4] + "0000"
    with pytest.raises(Rejected) as caught:
        await instagram_publisher.publish(media_url=url, media_type="image/jpeg", caption=None)
    assert "9004" in caught.value.detail
    assert instagram_media.hits == ["/media/photo.jpg"]  # Instagram really tried
    assert_safe(caught.value, url, instagram_fake.token)


async def test_video_fetch_failure_ends_the_container_in_error(
    instagram_fake: FakeInstagram, instagram_media: MediaHost, instagram_publisher: InstagramPublisher
) -> None:
    url = instagram_media.add("reel.mp4", JPEG, "video/mp4")  # not a video

    with pytest.raises(Rejected) as caught:
        await instagram_publisher.publish(media_url=url, media_type="video/mp4", caption=None)

    assert caught.value.detail == "Instagram could not process the media (status ERROR, subcode 2207052)"
    assert instagram_fake.published == {}
    assert not any(p.endswith("/media_publish") for p in instagram_fake.paths())


async def test_a_container_that_never_finishes_stops_at_max_wait(
    instagram_fake: FakeInstagram, instagram_media: MediaHost, tmp_path: Path
) -> None:
    instagram_fake.in_progress_polls = 10**6
    url = instagram_media.add("reel.mp4", MP4, "video/mp4")
    publisher = make_publisher(instagram_fake, tmp_path, max_wait=0.3)
    try:
        with pytest.raises(Unavailable) as caught:
            await publisher.publish(media_url=url, media_type="video/mp4", caption=None)
    finally:
        await publisher.aclose()
    assert caught.value.retryable
    assert "0.3 seconds" in caught.value.detail
    polls = [p for p in instagram_fake.paths() if p.startswith("GET ")]
    assert 3 <= len(polls) < 40  # it backed off instead of hammering


async def test_a_lost_publish_answer_is_not_retried_into_a_second_post(
    instagram_fake: FakeInstagram, instagram_media: MediaHost, instagram_publisher: InstagramPublisher
) -> None:
    url = instagram_media.add("photo.jpg", JPEG, "image/jpeg")
    instagram_fake.lose_next_publish_answer = True

    with pytest.raises(Rejected) as caught:
        await instagram_publisher.publish(media_url=url, media_type="image/jpeg", caption=None)

    assert not caught.value.retryable
    assert "published" in caught.value.detail
    assert len(instagram_fake.published) == 1


# --- the connection test and the token ------------------------------------------------------------------
async def test_connection_test_is_a_real_round_trip(
    instagram_fake: FakeInstagram, instagram_publisher: InstagramPublisher
) -> None:
    detail = await instagram_publisher.test()
    assert detail == "connected to Instagram account @filegate.test"
    assert instagram_fake.paths() == [f"GET /v21.0/{instagram_fake.ig_user_id}"]
    assert_no_token_in_urls(instagram_fake)


async def test_connection_test_through_the_factory(instagram_fake: FakeInstagram, tmp_path: Path) -> None:
    publisher = open_connector(
        InstagramConfig(ig_user_id=instagram_fake.ig_user_id, graph_api_version="v22.0"),
        InstagramSecrets(access_token=instagram_fake.token),
        Endpoints(local_root=tmp_path, instagram_url=instagram_fake.url),
        ObjectRoot.of(uuid.uuid4(), None),
    )
    try:
        assert isinstance(publisher, InstagramPublisher)
        assert isinstance(publisher, Publisher)
        assert isinstance(publisher, TokenRefresher)
        assert "@filegate.test" in await publisher.test()
    finally:
        await publisher.aclose()
    assert instagram_fake.paths() == [f"GET /v22.0/{instagram_fake.ig_user_id}"]


async def test_refresh_token_rotates_and_the_new_token_works(
    instagram_fake: FakeInstagram,
    instagram_media: MediaHost,
    instagram_publisher: InstagramPublisher,
    tmp_path: Path,
) -> None:
    old = instagram_fake.token

    new, expires_in = await instagram_publisher.refresh_token()

    assert new == instagram_fake.token != old
    assert expires_in == 5183944
    # The publisher switched to the new token.
    assert "@filegate.test" in await instagram_publisher.test()
    url = instagram_media.add("photo.jpg", JPEG, "image/jpeg")
    await instagram_publisher.publish(media_url=url, media_type="image/jpeg", caption=None)
    # The old one stopped working.
    stale = make_publisher(instagram_fake, tmp_path, token=old)
    try:
        with pytest.raises(AuthFailed) as caught:
            await stale.test()
    finally:
        await stale.aclose()
    assert_safe(caught.value, old, new)
    # The documented refresh form (token in the query) is the only request with a token in its URL.
    refresh = [r for r in instagram_fake.requests if r.path == "/refresh_access_token"]
    assert [(r.method, r.auth) for r in refresh] == [("GET", "query")]
    assert_no_token_in_urls(instagram_fake)


async def test_refresh_with_an_expired_token_fails(
    instagram_fake: FakeInstagram, instagram_publisher: InstagramPublisher
) -> None:
    instagram_fake.expire_token()
    with pytest.raises(AuthFailed) as caught:
        await instagram_publisher.refresh_token()
    assert_safe(caught.value, instagram_fake.token)


async def test_expired_token_is_auth_failed(
    instagram_fake: FakeInstagram, instagram_media: MediaHost, instagram_publisher: InstagramPublisher
) -> None:
    url = instagram_media.add("photo.jpg", JPEG, "image/jpeg")
    instagram_fake.expire_token()

    with pytest.raises(AuthFailed) as publishing:
        await instagram_publisher.publish(media_url=url, media_type="image/jpeg", caption=None)
    with pytest.raises(AuthFailed) as testing:
        await instagram_publisher.test()

    for caught in (publishing, testing):
        assert caught.value.detail == "the Instagram access token is invalid or expired"
        assert not caught.value.retryable
        assert_safe(caught.value, instagram_fake.token, url, "Session has expired")
    assert instagram_fake.token not in repr(instagram_publisher)
    assert instagram_media.hits == []


async def test_a_token_that_cannot_be_a_header_is_refused_without_being_quoted(
    instagram_fake: FakeInstagram, tmp_path: Path
) -> None:
    bad = "IGAA secret\r\nX-Evil: 1"
    publisher = make_publisher(instagram_fake, tmp_path, token=bad)
    try:
        with pytest.raises(AuthFailed) as caught:
            await publisher.test()
    finally:
        await publisher.aclose()
    assert_safe(caught.value, "secret", "X-Evil")
    assert instagram_fake.requests == []


# --- throttling and outages -----------------------------------------------------------------------------
@pytest.mark.parametrize("code", [4, 17, 32, 613, 80002])
async def test_throttling_is_throttled_with_the_advertised_wait(
    instagram_fake: FakeInstagram,
    instagram_media: MediaHost,
    instagram_publisher: InstagramPublisher,
    code: int,
) -> None:
    url = instagram_media.add("photo.jpg", JPEG, "image/jpeg")
    instagram_fake.throttle(1, code=code, retry_minutes=5)

    with pytest.raises(Throttled) as caught:
        await instagram_publisher.publish(media_url=url, media_type="image/jpeg", caption=None)

    assert caught.value.retryable
    assert caught.value.retry_after == 300.0  # estimated_time_to_regain_access is in minutes
    assert str(code) in caught.value.detail
    assert_safe(caught.value, instagram_fake.token, url)
    # Once the limit lifts, the same publish goes through.
    result = await instagram_publisher.publish(media_url=url, media_type="image/jpeg", caption=None)
    assert result.media_id in instagram_fake.published


async def test_throttling_without_a_usage_header_waits_a_default(
    instagram_fake: FakeInstagram, instagram_publisher: InstagramPublisher
) -> None:
    instagram_fake.throttle(1, code=4, status=403, retry_minutes=None)
    with pytest.raises(Throttled) as caught:
        await instagram_publisher.test()
    assert caught.value.retry_after == 60.0


async def test_throttling_while_polling_surfaces_as_throttled(
    instagram_fake: FakeInstagram, instagram_media: MediaHost, instagram_publisher: InstagramPublisher
) -> None:
    url = instagram_media.add("reel.mp4", MP4, "video/mp4")
    original = instagram_fake.handle
    calls = 0

    def throttle_the_first_poll(method: str, target: str, headers: dict[str, str], body: bytes) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:
            instagram_fake.throttle(1, code=32, retry_minutes=1)
        return original(method, target, headers, body)

    instagram_fake.handle = throttle_the_first_poll  # type: ignore[method-assign]
    with pytest.raises(Throttled) as caught:
        await instagram_publisher.publish(media_url=url, media_type="video/mp4", caption=None)
    assert caught.value.retry_after == 60.0


async def test_an_unreachable_service_is_unavailable(instagram_fake: FakeInstagram, tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    instagram_fake.url = f"http://127.0.0.1:{port}"  # nothing listens there any more
    publisher = make_publisher(instagram_fake, tmp_path)
    try:
        with pytest.raises(Unavailable) as testing:
            await publisher.test()
        with pytest.raises(Unavailable) as refreshing:
            await publisher.refresh_token()
    finally:
        await publisher.aclose()
    for caught in (testing, refreshing):
        assert caught.value.retryable
        assert_safe(caught.value, instagram_fake.token, str(port))


# --- the error table ------------------------------------------------------------------------------------
def _graph(code: int | None, subcode: int | None = None, kind: str = "OAuthException") -> dict[str, Any]:
    error: dict[str, Any] = {
        "message": "Error with token IGAAsecret at https://media.example/x?signature=abc",
        "type": kind,
        "fbtrace_id": "AbC",
    }
    if code is not None:
        error["code"] = code
    if subcode is not None:
        error["error_subcode"] = subcode
    return {"error": error}


@pytest.mark.parametrize(
    ("status", "body", "headers", "expected", "detail"),
    [
        (400, _graph(190, 460), {}, AuthFailed, "the Instagram access token is invalid or expired"),
        (400, _graph(102), {}, AuthFailed, "the Instagram access token is invalid or expired"),
        (401, {}, {}, AuthFailed, "the Instagram access token is invalid or expired"),
        (400, _graph(None), {}, AuthFailed, "the Instagram access token is invalid or expired"),
        (403, _graph(10), {}, AuthFailed, "the token lacks a permission"),
        (400, _graph(200), {}, AuthFailed, "the token lacks a permission"),
        (400, _graph(3), {}, AuthFailed, "the token lacks a permission"),
        (400, _graph(100, 33), {}, Rejected, "Instagram refused the request (code 100/33)"),
        (
            400,
            _graph(36003, 2207009, "IGApiException"),
            {},
            Rejected,
            "Instagram refused the request (code 36003/2207009)",
        ),
        (400, _graph(9, 2207042), {}, Rejected, "Instagram refused the request (code 9/2207042)"),
        (
            400,
            _graph(9007, 2207027),
            {},
            Unavailable,
            "Instagram had a temporary failure (code 9007/2207027)",
        ),
        (500, _graph(1, 99), {}, Unavailable, "Instagram had a temporary failure (code 1/99)"),
        (502, None, {}, Unavailable, "Instagram answered with a server error (HTTP 502)"),
        (429, None, {"Retry-After": "7"}, Throttled, "Instagram is rate limiting this account (HTTP 429)"),
        (
            400,
            _graph(4),
            {"X-App-Usage": '{"call_count":100}'},
            Throttled,
            "Instagram is rate limiting this account (code 4)",
        ),
        (404, None, {}, Rejected, "Instagram refused the request (HTTP 404)"),
    ],
)
def test_graph_errors_map_to_safe_connector_errors(
    status: int, body: Any, headers: dict[str, str], expected: type[ConnectorError], detail: str
) -> None:
    error = graph_error(status, body, httpx.Headers(headers))
    assert type(error) is expected
    assert error.detail == detail
    assert_safe(error, "IGAAsecret", "signature", "media.example")
    if isinstance(error, Throttled):
        assert error.retry_after == (7.0 if "Retry-After" in headers else 60.0)


async def test_graph_redirect_to_an_internal_address_is_not_followed(tmp_path: Path) -> None:
    with internal_target() as target, redirector(target.url) as hostile:
        publisher = InstagramPublisher(
            InstagramConfig(ig_user_id="17841400000000000", graph_api_version="v21.0"),
            InstagramSecrets(access_token="IGQVJ-example-token"),
            Endpoints(local_root=tmp_path, instagram_url=hostile.url),
        )
        try:
            with pytest.raises(ConnectorError) as caught:
                await publisher.test()
            with pytest.raises(ConnectorError):
                await publisher.refresh_token()
        finally:
            await publisher.aclose()
    assert len(hostile.requests) == 2
    assert target.connections == [], "the Graph redirect to the internal address was followed"
    assert isinstance(caught.value, Rejected) and "redirect" in caught.value.detail
