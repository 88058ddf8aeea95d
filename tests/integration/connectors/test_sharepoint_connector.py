"""The SharePoint connector through office365-rest-python-client and msal, against a local Graph fake.

Nothing of the library is mocked: the fake (tests/fakes/sharepoint.py) speaks HTTPS with a CA made for
the session, msal discovers the tenant and gets tokens from it, and the library sends every Graph call.
"""

from __future__ import annotations

import logging
import os
import secrets
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.base import AuthFailed, ConnectorError, ObjectNotFound, Rejected, Throttled, Unavailable
from connectors.factory import Endpoints
from connectors.schemas import SharePointConfig, SharePointSecrets
from connectors.sharepoint import FRAGMENT, SharePointConnector
from tests.fakes.sharepoint import FRAGMENT_UNIT, FakeCA, FakeSharePoint, app_certificate
from tests.fakes.ssrf import internal_target

TENANT = str(uuid.uuid4())
CLIENT = str(uuid.uuid4())
HOST = "contoso.sharepoint.com"
SITE_URL = f"https://{HOST}/sites/team"
MiB = 1024 * 1024

Connect = Callable[..., SharePointConnector]


@pytest.fixture(scope="session")
def sharepoint_ca(tmp_path_factory: pytest.TempPathFactory) -> FakeCA:
    return FakeCA(tmp_path_factory.mktemp("sharepoint-tls"))


@pytest.fixture
def sharepoint_secret() -> str:
    return f"fg-client-secret-{secrets.token_urlsafe(24)}"


@pytest.fixture
def sharepoint_fake(sharepoint_ca: FakeCA, sharepoint_secret: str) -> Iterator[FakeSharePoint]:
    fake = FakeSharePoint(sharepoint_ca, tenant_id=TENANT, client_id=CLIENT)
    fake.register_secret(sharepoint_secret)
    fake.watch("secret", sharepoint_secret)
    fake.add_site(HOST, "/sites/team", drives=("Documents", "Archive"))
    with fake.running():
        yield fake


@pytest.fixture
async def sharepoint_connect(
    sharepoint_fake: FakeSharePoint, sharepoint_secret: str, tmp_path: Path
) -> AsyncIterator[Connect]:
    """Build connectors against the fake (closed at the end of the test)."""
    made: list[SharePointConnector] = []

    def connect(
        *, site_url: str = SITE_URL, drive: str | None = None, **secret_fields: Any
    ) -> SharePointConnector:
        fields = {"tenant_id": TENANT, "client_id": CLIENT, **secret_fields}
        if "certificate_pem" not in fields and "client_secret" not in fields:
            fields["client_secret"] = sharepoint_secret
        endpoints = Endpoints(
            local_root=tmp_path, login_url=sharepoint_fake.base, graph_url=sharepoint_fake.base
        )
        connector = SharePointConnector(
            SharePointConfig(site_url=site_url, drive=drive),
            SharePointSecrets(**fields),
            endpoints,
            ca_bundle=str(sharepoint_fake.ca.ca_path),
        )
        made.append(connector)
        return connector

    yield connect
    for connector in made:
        await connector.aclose()


async def _chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def _read(stream: AsyncIterator[bytes]) -> bytes:
    return b"".join([piece async for piece in stream])


def _default_drive(fake: FakeSharePoint) -> str:
    return fake.sites[0].drives["Documents"]


async def test_small_file_round_trip_uses_a_simple_put(
    sharepoint_connect: Connect, sharepoint_fake: FakeSharePoint
) -> None:
    connector = sharepoint_connect()
    data = os.urandom(150_000)
    key = "tenant/docs/report 2024 #1.pdf"

    info = await connector.put(key, _chunks(data, 64 * 1024), size=len(data), content_type="application/pdf")

    assert (info.key, info.size) == (key, len(data))
    assert info.modified_at is not None
    assert await _read(connector.get(key)) == data
    stored = sharepoint_fake.file(_default_drive(sharepoint_fake), key)
    assert stored is not None and stored.mime == "application/pdf"
    calls = [(r.method, r.path) for r in sharepoint_fake.requests]
    assert not any(path.endswith("/createUploadSession") for _, path in calls)
    assert (
        "PUT",
        f"/v1.0/drives/{_default_drive(sharepoint_fake)}/root:/tenant/docs/report%202024%20%231.pdf:/content",
    ) in calls


async def test_large_file_round_trip_uses_an_upload_session(
    sharepoint_connect: Connect, sharepoint_fake: FakeSharePoint
) -> None:
    connector = sharepoint_connect()
    data = os.urandom(12 * MiB)
    key = "tenant/big/archive.bin"

    # Odd chunk sizes: fragments must still be whole multiples of 320 KiB.
    info = await connector.put(key, _chunks(data, 700 * 1024 + 3), size=len(data), content_type=None)

    assert info.size == len(data)
    [session] = sharepoint_fake.sessions.values()
    assert session.done and not session.cancelled
    assert sum(session.fragments) == len(data)
    assert all(size % FRAGMENT_UNIT == 0 for size in session.fragments[:-1])
    assert max(session.fragments) <= FRAGMENT and len(session.fragments) == 3
    fragment_puts = [r for r in sharepoint_fake.requests if r.path.startswith("/upload/")]
    assert len(fragment_puts) == 3
    assert all(
        "authorization" not in r.headers for r in fragment_puts
    )  # the session URL is pre-authenticated
    assert not any(r.path.endswith(":/content") and r.method == "PUT" for r in sharepoint_fake.requests)

    assert await _read(connector.get(key)) == data
    downloads = [r for r in sharepoint_fake.requests if r.path.startswith("/download/")]
    assert len(downloads) == 1 and "authorization" not in downloads[0].headers


async def test_stat_and_missing_objects(sharepoint_connect: Connect, sharepoint_fake: FakeSharePoint) -> None:
    connector = sharepoint_connect()
    sharepoint_fake.put_file(_default_drive(sharepoint_fake), "tenant/a.txt", b"hello")

    info = await connector.stat("tenant/a.txt")
    assert (info.key, info.size) == ("tenant/a.txt", 5)
    assert info.modified_at is not None and info.modified_at.tzinfo is not None

    with pytest.raises(ObjectNotFound):
        await connector.stat("tenant/missing.txt")
    with pytest.raises(ObjectNotFound):
        await connector.stat("tenant")  # a folder is not an object
    with pytest.raises(ObjectNotFound):
        await _read(connector.get("tenant/missing.txt"))


async def test_list_pages_through_graph_paging(
    sharepoint_connect: Connect, sharepoint_fake: FakeSharePoint
) -> None:
    connector = sharepoint_connect()
    drive = _default_drive(sharepoint_fake)
    for name in ("e.txt", "b.txt", "a.txt", "d.txt", "c.txt", "sub/deep.txt"):
        sharepoint_fake.put_file(drive, f"tenant/docs/{name}", name.encode())
    sharepoint_fake.put_file(drive, "tenant/other.txt", b"x")

    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        page = await connector.list("tenant/docs/", cursor=cursor, limit=2)
        pages.append([item.key for item in page.items])
        cursor = page.cursor
        if cursor is None:
            break
        assert len(pages) < 10

    assert [key for page in pages for key in page] == [f"tenant/docs/{n}.txt" for n in "abcde"]
    assert all(len(page) <= 2 for page in pages) and pages[0] == ["tenant/docs/a.txt", "tenant/docs/b.txt"]
    assert any("$skiptoken=" in r.query for r in sharepoint_fake.requests)  # Graph's nextLink was followed

    only_b = await connector.list("tenant/docs/b", cursor=None, limit=10)
    assert [item.key for item in only_b.items] == ["tenant/docs/b.txt"] and only_b.cursor is None
    sizes = {item.key: item.size for item in (await connector.list("tenant/", cursor=None, limit=10)).items}
    assert sizes == {"tenant/other.txt": 1}  # one level: folders are not objects
    empty = await connector.list("tenant/nowhere/", cursor=None, limit=10)
    assert empty.items == [] and empty.cursor is None


async def test_delete_removes_files_and_ignores_absent_keys_and_folders(
    sharepoint_connect: Connect, sharepoint_fake: FakeSharePoint
) -> None:
    connector = sharepoint_connect()
    drive = _default_drive(sharepoint_fake)
    sharepoint_fake.put_file(drive, "tenant/a.txt", b"a")
    sharepoint_fake.put_file(drive, "tenant/folder/kept.txt", b"k")

    await connector.delete("tenant/a.txt")
    await connector.delete("tenant/a.txt")  # absent is not an error
    await connector.delete("tenant/folder")  # a folder is not an object: never deleted through a key

    assert sharepoint_fake.file(drive, "tenant/a.txt") is None
    assert sharepoint_fake.file(drive, "tenant/folder/kept.txt") is not None
    with pytest.raises(ObjectNotFound):
        await connector.stat("tenant/a.txt")


async def test_test_with_a_client_secret(
    sharepoint_connect: Connect, sharepoint_fake: FakeSharePoint, sharepoint_secret: str
) -> None:
    connector = sharepoint_connect(drive="Archive")

    assert await connector.test()

    token_calls = [r for r in sharepoint_fake.requests if r.path.endswith("/oauth2/v2.0/token")]
    assert len(token_calls) == 1 and token_calls[0].status == 200
    carried = [r.path for r in sharepoint_fake.requests if "secret" in r.carried]
    assert carried == [token_calls[0].path]  # only the token call ever carries the client secret
    paths = [r.path for r in sharepoint_fake.graph_calls()]
    assert paths[0] == "/v1.0/sites/contoso.sharepoint.com:/sites/team"
    assert paths[1].endswith("/drives")
    assert not any(r.path.startswith("/common/discovery") for r in sharepoint_fake.requests)


@pytest.mark.parametrize("password", [None, "pem-password"])
async def test_test_with_a_certificate(
    sharepoint_connect: Connect, sharepoint_fake: FakeSharePoint, password: str | None
) -> None:
    pem, certificate = app_certificate(password)
    sharepoint_fake.register_certificate(certificate)
    sharepoint_fake.watch("assertion", "client_assertion=")
    connector = sharepoint_connect(certificate_pem=pem, certificate_password=password)

    assert await connector.test()

    [token_call] = [r for r in sharepoint_fake.requests if r.path.endswith("/oauth2/v2.0/token")]
    assert token_call.status == 200 and "assertion" in token_call.carried


async def test_a_certificate_the_app_does_not_know_is_refused(
    sharepoint_connect: Connect, sharepoint_fake: FakeSharePoint
) -> None:
    _, registered = app_certificate()
    sharepoint_fake.register_certificate(registered)
    pem, _ = app_certificate()
    connector = sharepoint_connect(certificate_pem=pem)

    with pytest.raises(AuthFailed):
        await connector.test()


async def test_wrong_client_secret_is_auth_failed_and_never_echoed(
    sharepoint_connect: Connect, sharepoint_fake: FakeSharePoint, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = f"wrong-secret-{secrets.token_urlsafe(16)}"
    sharepoint_fake.watch("wrong", wrong)
    connector = sharepoint_connect(client_secret=wrong)

    with pytest.raises(AuthFailed) as caught:
        await connector.test()

    exc = caught.value
    for text in (str(exc), exc.detail, repr(exc), repr(connector), caplog.text):
        assert wrong not in text
    assert exc.__cause__ is None and exc.__suppress_context__
    assert [r.path for r in sharepoint_fake.requests if "wrong" in r.carried] == [
        f"/{TENANT}/oauth2/v2.0/token"
    ]
    assert sharepoint_fake.graph_calls() == []


async def test_unknown_tenant_or_client_is_auth_failed(
    sharepoint_connect: Connect, sharepoint_fake: FakeSharePoint
) -> None:
    with pytest.raises(AuthFailed):
        await sharepoint_connect(tenant_id=str(uuid.uuid4())).test()
    with pytest.raises(AuthFailed):
        await sharepoint_connect(client_id=str(uuid.uuid4())).test()


async def test_missing_site_or_drive_is_rejected(sharepoint_connect: Connect) -> None:
    with pytest.raises(Rejected, match="site"):
        await sharepoint_connect(site_url=f"https://{HOST}/sites/nope").test()
    with pytest.raises(Rejected, match="document library"):
        await sharepoint_connect(drive="No Such Library").test()


async def test_throttling_is_throttled_with_retry_after(
    sharepoint_connect: Connect, sharepoint_fake: FakeSharePoint
) -> None:
    connector = sharepoint_connect()
    sharepoint_fake.throttle(100, retry_after=30)

    with pytest.raises(Throttled) as caught:
        await connector.test()
    assert caught.value.retry_after == 30 and caught.value.retryable

    sharepoint_fake.throttle(100, retry_after=20, status=503)
    with pytest.raises(Throttled) as caught:
        await connector.stat("tenant/a.txt")
    assert caught.value.retry_after == 20


async def test_a_transient_429_is_retried_by_the_connector(
    sharepoint_connect: Connect, sharepoint_fake: FakeSharePoint
) -> None:
    connector = sharepoint_connect()
    sharepoint_fake.put_file(_default_drive(sharepoint_fake), "tenant/a.txt", b"hello")
    sharepoint_fake.throttle(1, retry_after=1)

    info = await connector.stat("tenant/a.txt")

    assert info.size == 5
    statuses = [r.status for r in sharepoint_fake.graph_calls()]
    assert statuses[0] == 429 and statuses[1:] == [200] * (len(statuses) - 1)
    assert sharepoint_fake.graph_calls()[0].path == sharepoint_fake.graph_calls()[1].path


class Boom(Exception):
    pass


async def _failing(data: bytes, fail_after: int) -> AsyncIterator[bytes]:
    sent = 0
    async for piece in _chunks(data, MiB):
        if sent >= fail_after:
            raise Boom
        sent += len(piece)
        yield piece


@pytest.mark.parametrize("size", [2 * MiB, 12 * MiB])
async def test_a_put_whose_stream_fails_leaves_no_item(
    sharepoint_connect: Connect, sharepoint_fake: FakeSharePoint, size: int
) -> None:
    connector = sharepoint_connect()
    data = os.urandom(size)

    with pytest.raises(Boom):
        await connector.put("tenant/broken.bin", _failing(data, size // 2), size=size, content_type=None)

    assert sharepoint_fake.file(_default_drive(sharepoint_fake), "tenant/broken.bin") is None
    with pytest.raises(ObjectNotFound):
        await connector.stat("tenant/broken.bin")
    for session in sharepoint_fake.sessions.values():
        assert session.cancelled and not session.done


async def test_a_stream_longer_than_declared_is_refused(
    sharepoint_connect: Connect, sharepoint_fake: FakeSharePoint
) -> None:
    connector = sharepoint_connect()
    data = os.urandom(6 * MiB)

    with pytest.raises(Rejected):
        await connector.put("tenant/long.bin", _chunks(data, MiB), size=5 * MiB, content_type=None)

    assert sharepoint_fake.file(_default_drive(sharepoint_fake), "tenant/long.bin") is None


async def test_a_token_graph_refuses_is_auth_failed(
    sharepoint_connect: Connect, sharepoint_fake: FakeSharePoint
) -> None:
    connector = sharepoint_connect()
    await connector.test()
    sharepoint_fake.tokens.clear()  # revoked: msal still holds it in its cache, Graph answers 401

    with pytest.raises(AuthFailed):
        await connector.stat("tenant/a.txt")


async def test_an_unreachable_service_is_unavailable(tmp_path: Path, sharepoint_ca: FakeCA) -> None:
    endpoints = Endpoints(
        local_root=tmp_path, login_url="https://127.0.0.1:9", graph_url="https://127.0.0.1:9"
    )
    connector = SharePointConnector(
        SharePointConfig(site_url=SITE_URL),
        SharePointSecrets(tenant_id=TENANT, client_id=CLIENT, client_secret="unused-secret"),
        endpoints,
        ca_bundle=str(sharepoint_ca.ca_path),
    )
    try:
        with pytest.raises(Unavailable) as caught:
            await connector.test()
        assert "127.0.0.1" not in caught.value.detail
    finally:
        await connector.aclose()


async def test_a_cursor_resumes_inside_a_page_whatever_the_next_limit(
    sharepoint_connect: Connect, sharepoint_fake: FakeSharePoint
) -> None:
    connector = sharepoint_connect()
    drive = _default_drive(sharepoint_fake)
    for name in "abcdefg":
        sharepoint_fake.put_file(drive, f"tenant/{name}.txt", b"x")
    sharepoint_fake.put_file(drive, "tenant/other.bin", b"x")

    first = await connector.list("tenant/", cursor=None, limit=5)
    second = await connector.list("tenant/", cursor=first.cursor, limit=1)
    rest = await connector.list("tenant/", cursor=second.cursor, limit=50)

    keys = [i.key for page in (first, second, rest) for i in page.items]
    assert keys == [*sorted(f"tenant/{n}.txt" for n in "abcdefg"), "tenant/other.bin"]
    assert rest.cursor is None


@pytest.mark.parametrize("service", ["graph", "login"])
async def test_redirect_to_an_internal_address_is_not_followed(
    sharepoint_connect: Connect, sharepoint_fake: FakeSharePoint, service: str
) -> None:
    """Graph (a site lookup) or the login service (msal's tenant discovery) answers 302 to an internal URL."""
    with internal_target() as target:
        sharepoint_fake.redirect_to = target.url + "/latest/meta-data/"
        if service == "login":
            sharepoint_fake.redirect_prefix = f"/{TENANT}/"
        connector = sharepoint_connect()
        with pytest.raises(ConnectorError) as caught:
            await connector.test()
    assert [r for r in sharepoint_fake.requests if r.status == 302], "the fake redirected"
    assert target.connections == [], "the redirect to the internal address was followed"
    assert isinstance(caught.value, Rejected) and "redirect" in caught.value.detail
