"""The S3 connector against a real S3 server (SeaweedFS, tests/s3.py): a fresh bucket per test."""

from __future__ import annotations

import asyncio
import os
import traceback
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
from botocore.awsrequest import AWSResponse
from botocore.stub import Stubber

from connectors.base import (
    AuthFailed,
    Connector,
    ConnectorError,
    ObjectNotFound,
    Rejected,
    Unavailable,
)
from connectors.factory import Endpoints, open_connector
from connectors.outbound import Outbound
from connectors.paths import ObjectRoot
from connectors.s3 import PART, S3Connector, part_size_for
from connectors.schemas import S3Config, S3Secrets
from tests.clamd import free_port
from tests.fakes.ssrf import RebindingDns, internal_target, redirector
from tests.s3 import ACCESS_KEY, REGION, SECRET_KEY, Bucket

MIB = 1024 * 1024
WRONG_SECRET = "wrong-secret-Zq8vN3xLr7TtY2pK"


def make(bucket: str, endpoint: str, *, secret: str = SECRET_KEY, **config: str) -> S3Connector:
    return S3Connector(
        msgspec.convert({"bucket": bucket, "region": REGION, "endpoint_url": endpoint, **config}, S3Config),
        msgspec.convert({"access_key_id": ACCESS_KEY, "secret_access_key": secret}, S3Secrets),
        Outbound.for_tenants(allow_private=True),
    )


@pytest.fixture
async def s3(s3_bucket: Bucket) -> AsyncIterator[S3Connector]:
    connector = make(s3_bucket.name, s3_bucket.s3.endpoint)
    yield connector
    await connector.aclose()


async def stream(data: bytes, chunk: int = MIB + 7) -> AsyncIterator[bytes]:
    for i in range(0, len(data), chunk):
        yield data[i : i + chunk]


async def read_all(chunks: AsyncIterator[bytes]) -> bytes:
    return b"".join([c async for c in chunks])


def assert_safe(exc: ConnectorError, *secrets: str) -> None:
    shown = [str(exc), exc.detail, repr(exc), "".join(traceback.format_exception(exc))]
    for secret in secrets:
        for text in shown:
            assert secret not in text


async def test_connector_is_built_by_the_factory(s3_bucket: Bucket, tmp_path: Path) -> None:
    config = msgspec.convert(
        {"bucket": s3_bucket.name, "region": REGION, "endpoint_url": s3_bucket.s3.endpoint}, S3Config
    )
    secrets = S3Secrets(access_key_id=ACCESS_KEY, secret_access_key=SECRET_KEY)
    connector = open_connector(
        config, secrets, Endpoints(local_root=tmp_path, allow_private=True), ObjectRoot.of(uuid.uuid4(), None)
    )
    try:
        assert isinstance(connector, S3Connector)
        assert isinstance(connector, Connector)
        assert await connector.test() == "the bucket is reachable with these credentials"
    finally:
        await connector.aclose()


async def test_small_file_round_trip(s3: S3Connector, s3_bucket: Bucket) -> None:
    data = os.urandom(300_001)
    info = await s3.put("t/a/small.bin", stream(data, 65_536), size=len(data), content_type="image/png")
    assert (info.key, info.size) == ("t/a/small.bin", len(data))
    assert await read_all(s3.get("t/a/small.bin")) == data
    head = s3_bucket.client.head_object(Bucket=s3_bucket.name, Key="t/a/small.bin")
    assert head["ContentType"] == "image/png"
    assert "-" not in head["ETag"]  # a single PutObject, not a multipart upload
    stat = await s3.stat("t/a/small.bin")
    assert stat.size == len(data)
    assert stat.modified_at is not None


async def test_empty_file_round_trip(s3: S3Connector) -> None:
    await s3.put("t/empty", stream(b""), size=0, content_type=None)
    assert await read_all(s3.get("t/empty")) == b""
    assert (await s3.stat("t/empty")).size == 0


async def test_large_file_is_uploaded_in_parts(s3: S3Connector, s3_bucket: Bucket) -> None:
    data = os.urandom(20 * MIB)
    info = await s3.put("t/big.bin", stream(data), size=len(data), content_type="application/octet-stream")
    assert info.size == len(data)
    head = s3_bucket.client.head_object(Bucket=s3_bucket.name, Key="t/big.bin")
    assert head["ContentLength"] == len(data)
    assert head["ETag"].strip('"').endswith("-3")  # 8 + 8 + 4 MiB
    chunks = [c async for c in s3.get("t/big.bin")]
    assert b"".join(chunks) == data
    assert max(len(c) for c in chunks) <= MIB  # streamed in 1 MiB reads
    assert s3_bucket.pending_uploads() == []


async def test_one_big_chunk_is_split_into_parts(s3: S3Connector, s3_bucket: Bucket) -> None:
    data = os.urandom(PART * 2 + 5)

    async def one_chunk() -> AsyncIterator[bytes]:
        yield data

    await s3.put("t/one", one_chunk(), size=len(data), content_type=None)
    head = s3_bucket.client.head_object(Bucket=s3_bucket.name, Key="t/one")
    assert head["ETag"].strip('"').endswith("-3")
    assert await read_all(s3.get("t/one")) == data


def test_part_size_grows_only_past_the_part_limit() -> None:
    assert part_size_for(0) == PART
    assert part_size_for(PART * 10_000) == PART
    big = 5 * 1024**4  # 5 TiB, S3's largest object
    assert part_size_for(big) % MIB == 0
    assert big / part_size_for(big) < 10_000


async def test_put_replaces_an_object(s3: S3Connector) -> None:
    await s3.put("t/x", stream(b"first"), size=5, content_type=None)
    await s3.put("t/x", stream(b"second!"), size=7, content_type=None)
    assert await read_all(s3.get("t/x")) == b"second!"


async def test_missing_object(s3: S3Connector) -> None:
    with pytest.raises(ObjectNotFound):
        await s3.stat("t/nope")
    chunks = s3.get("t/nope")  # nothing happens before the first iteration
    with pytest.raises(ObjectNotFound):
        await read_all(chunks)


async def test_list_pages_with_a_cursor_and_filters_by_prefix(s3: S3Connector) -> None:
    keys = [f"t/p/{name}" for name in ("a", "b", "c", "d", "e")]
    for key in [*keys, "t/q/a", "t/pz"]:
        await s3.put(key, stream(key.encode()), size=len(key), content_type=None)

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = await s3.list("t/p/", cursor=cursor, limit=2)
        pages += 1
        assert len(page.items) <= 2
        seen += [item.key for item in page.items]
        assert all(item.size == len(item.key) for item in page.items)
        assert all(item.modified_at is not None for item in page.items)
        cursor = page.cursor
        if cursor is None:
            break
        assert pages < 10
    assert seen == keys
    assert pages == 3

    everything = await s3.list("t/", cursor=None, limit=100)
    assert [i.key for i in everything.items] == [*keys, "t/pz", "t/q/a"]
    assert everything.cursor is None
    assert (await s3.list("t/none/", cursor=None, limit=10)).items == []


async def test_delete_and_delete_of_an_absent_key(s3: S3Connector, s3_bucket: Bucket) -> None:
    await s3.put("t/gone", stream(b"x"), size=1, content_type=None)
    await s3.delete("t/gone")
    assert s3_bucket.object_keys() == []
    await s3.delete("t/gone")
    await s3.delete("t/never-existed")
    with pytest.raises(ObjectNotFound):
        await s3.stat("t/gone")


async def test_test_is_a_real_round_trip(s3: S3Connector) -> None:
    assert await s3.test() == "the bucket is reachable with these credentials"


async def test_wrong_secret_key_is_auth_failed_and_never_shown(s3_bucket: Bucket) -> None:
    connector = make(s3_bucket.name, s3_bucket.s3.endpoint, secret=WRONG_SECRET)
    try:
        failures: list[ConnectorError] = []
        for attempt in (
            connector.test(),
            connector.stat("t/x"),
            connector.list("", cursor=None, limit=5),
            connector.put("t/x", stream(b"data"), size=4, content_type=None),
            read_all(connector.get("t/x")),
        ):
            with pytest.raises(AuthFailed) as caught:
                await attempt
            failures.append(caught.value)
        for exc in failures:
            assert exc.code == "connector_auth_failed"
            assert not exc.retryable
            assert_safe(exc, WRONG_SECRET, SECRET_KEY)
        assert s3_bucket.object_keys() == []
    finally:
        await connector.aclose()


async def test_missing_bucket_is_rejected(s3_bucket: Bucket) -> None:
    connector = make("fg-no-such-bucket-here", s3_bucket.s3.endpoint)
    try:
        with pytest.raises(Rejected, match="the bucket does not exist"):
            await connector.test()
        with pytest.raises(Rejected, match="the bucket does not exist"):
            await connector.list("", cursor=None, limit=5)
        with pytest.raises(Rejected, match="the bucket does not exist"):
            await read_all(connector.get("t/x"))
        # (No put: SeaweedFS creates a missing bucket on the first PutObject of an admin identity.)
    finally:
        await connector.aclose()


async def test_unreachable_endpoint_is_unavailable(s3_bucket: Bucket) -> None:
    connector = make(s3_bucket.name, f"http://127.0.0.1:{free_port()}")
    try:
        with pytest.raises(Unavailable) as caught:
            await connector.test()
        assert caught.value.retryable
        assert "127.0.0.1" not in caught.value.detail
        with pytest.raises(Unavailable):
            await connector.put("t/x", stream(b"data"), size=4, content_type=None)
    finally:
        await connector.aclose()


class Boom(Exception):
    pass


async def failing_after(data: bytes, fail_at: int) -> AsyncIterator[bytes]:
    sent = 0
    for chunk in (data[i : i + MIB] for i in range(0, len(data), MIB)):
        if sent >= fail_at:
            raise Boom("the source broke")
        sent += len(chunk)
        yield chunk


async def test_failing_source_leaves_no_object_and_no_multipart_upload(
    s3: S3Connector, s3_bucket: Bucket
) -> None:
    data = os.urandom(20 * MIB)
    with pytest.raises(Boom):  # after two parts were sent
        await s3.put("t/broken", failing_after(data, 17 * MIB), size=len(data), content_type=None)
    assert s3_bucket.object_keys() == []
    assert s3_bucket.pending_uploads() == []

    with pytest.raises(Boom):  # before the first part was full
        await s3.put("t/broken", failing_after(data, 3 * MIB), size=len(data), content_type=None)
    assert s3_bucket.object_keys() == []
    assert s3_bucket.pending_uploads() == []


async def test_cancelled_put_aborts_the_multipart_upload(s3: S3Connector, s3_bucket: Bucket) -> None:
    stalled = asyncio.Event()

    async def stalls_after_a_part() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield os.urandom(MIB)
        stalled.set()
        await asyncio.Event().wait()  # the client went away
        yield b""

    task = asyncio.create_task(s3.put("t/cancelled", stalls_after_a_part(), size=30 * MIB, content_type=None))
    await asyncio.wait_for(stalled.wait(), 30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert s3_bucket.object_keys() == []
    assert s3_bucket.pending_uploads() == []


async def test_a_stream_shorter_than_announced_is_rejected(s3: S3Connector, s3_bucket: Bucket) -> None:
    with pytest.raises(Rejected, match="announced size"):
        await s3.put("t/short", stream(b"abc"), size=10, content_type=None)
    data = os.urandom(9 * MIB)
    with pytest.raises(Rejected, match="announced size"):
        await s3.put("t/short", stream(data), size=len(data) + 1, content_type=None)
    with pytest.raises(Rejected, match="announced size"):  # refused as soon as it overflows
        await s3.put("t/short", stream(data), size=3 * MIB, content_type=None)
    assert s3_bucket.object_keys() == []
    assert s3_bucket.pending_uploads() == []


async def test_sse_kms_is_requested_on_every_write(s3_bucket: Bucket) -> None:
    connector = make(s3_bucket.name, s3_bucket.s3.endpoint, sse_kms_key_id="alias/filegate-tenant")
    sse = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "alias/filegate-tenant"}
    data = os.urandom(PART + 10)
    with Stubber(connector._client) as stub:
        stub.add_response(
            "put_object",
            {"ETag": '"x"'},
            {"Bucket": s3_bucket.name, "Key": "t/s", "Body": b"small", "ContentType": "text/plain", **sse},
        )
        stub.add_response(
            "create_multipart_upload",
            {"UploadId": "u1"},
            {"Bucket": s3_bucket.name, "Key": "t/b", **sse},
        )
        for number, body in ((1, data[:PART]), (2, data[PART:])):
            stub.add_response(
                "upload_part",
                {"ETag": f'"e{number}"'},
                {
                    "Bucket": s3_bucket.name,
                    "Key": "t/b",
                    "UploadId": "u1",
                    "PartNumber": number,
                    "Body": body,
                },
            )
        stub.add_response(
            "complete_multipart_upload",
            {"ETag": '"x-2"'},
            {
                "Bucket": s3_bucket.name,
                "Key": "t/b",
                "UploadId": "u1",
                "MultipartUpload": {
                    "Parts": [{"PartNumber": 1, "ETag": '"e1"'}, {"PartNumber": 2, "ETag": '"e2"'}]
                },
            },
        )
        await connector.put("t/s", stream(b"small"), size=5, content_type="text/plain")
        await connector.put("t/b", stream(data), size=len(data), content_type=None)
        stub.assert_no_pending_responses()
    await connector.aclose()


ROLE_ARN = "arn:aws:iam::123456789012:role/filegate-delivery"


def role_credentials(minutes: int) -> dict[str, Any]:
    # STS hands out the test server's identity, so the S3 calls that follow are really signed with it
    # (no session token: SeaweedFS would take it for one of its own and refuse it).
    return {
        "Credentials": {
            "AccessKeyId": ACCESS_KEY,
            "SecretAccessKey": SECRET_KEY,
            "SessionToken": "",
            "Expiration": datetime.now(UTC) + timedelta(minutes=minutes),
        }
    }


async def test_assumed_role_credentials_are_used_and_refreshed(s3_bucket: Bucket) -> None:
    # The stored keys are wrong for S3 itself: only the role's credentials can work.
    connector = make(
        s3_bucket.name, s3_bucket.s3.endpoint, secret=WRONG_SECRET, role_arn=ROLE_ARN, external_id="tenant-42"
    )
    answers = [role_credentials(5), role_credentials(60)]  # the first is inside the refresh window
    calls: list[dict[str, Any]] = []

    def fake_sts(params: dict[str, Any], **_: Any) -> tuple[Any, dict[str, Any]]:
        # Short-circuits the call (the Stubber would refuse the test server's short access key).
        calls.append(params)
        return AWSResponse("https://sts.invalid/", 200, {}, None), answers.pop(0)

    connector._sts.meta.events.register("before-call.sts.AssumeRole", fake_sts)
    try:
        assert await connector.test() == "the bucket is reachable with these credentials"
        assert len(calls) == 1
        await connector.put("t/role", stream(b"via role"), size=8, content_type=None)  # refreshes
        assert len(calls) == 2
        assert await read_all(connector.get("t/role")) == b"via role"  # still valid: no call
        assert len(calls) == 2
        assert calls[0]["body"] == {
            "Action": "AssumeRole",
            "Version": "2011-06-15",
            "RoleArn": ROLE_ARN,
            "RoleSessionName": "filegate",
            "ExternalId": "tenant-42",
        }
        assert calls[0]["url"].startswith(s3_bucket.s3.endpoint)  # STS at the configured endpoint
    finally:
        await connector.aclose()


async def test_a_role_that_cannot_be_assumed_is_auth_failed(s3_bucket: Bucket) -> None:
    connector = make(s3_bucket.name, s3_bucket.s3.endpoint, role_arn=ROLE_ARN)
    try:
        with Stubber(connector._sts) as sts:
            sts.add_client_error(
                "assume_role",
                service_error_code="AccessDenied",
                service_message=f"User with key {SECRET_KEY} is not authorized",
                http_status_code=403,
            )
            with pytest.raises(AuthFailed, match="the role could not be assumed") as caught:
                await connector.test()
        assert_safe(caught.value, SECRET_KEY)
    finally:
        await connector.aclose()


async def test_endpoint_rebound_to_an_internal_address_is_refused_at_connect(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """DNS rebinding: the name is public when the endpoint is checked, internal when botocore connects."""
    dns = RebindingDns("s3.rebind.test")
    monkeypatch.setattr("socket.getaddrinfo", dns.getaddrinfo)
    with internal_target() as target:
        config = msgspec.convert(
            {
                "bucket": "rebound-bucket",
                "region": REGION,
                "endpoint_url": f"https://s3.rebind.test:{target.port}",
            },
            S3Config,
        )
        secrets = S3Secrets(access_key_id=ACCESS_KEY, secret_access_key=SECRET_KEY)
        connector = open_connector(
            config, secrets, Endpoints(local_root=tmp_path), ObjectRoot.of(uuid.uuid4(), None)
        )  # checked: public
        assert dns.asked == 1
        try:
            with pytest.raises(ConnectorError) as caught:
                await connector.test()
        finally:
            await connector.aclose()
    assert target.connections == [], "botocore connected to the rebound internal address"
    assert isinstance(caught.value, Rejected) and "address" in caught.value.detail


@pytest.mark.parametrize("status", [301, 302, 307])
async def test_endpoint_redirect_is_refused_and_not_chased(status: int, tmp_path: Path) -> None:
    """A hostile endpoint answering every request with a redirect and no bucket region: botocore never
    follows the Location, but its region redirector would ask HeadBucket again, and again (RecursionError,
    a 500). The redirect is refused at the first answer."""
    with internal_target() as target, redirector(target.url, status=status) as hostile:
        connector = make("any-bucket", hostile.url)
        try:
            with pytest.raises(ConnectorError) as caught:
                await connector.test()
            with pytest.raises(ConnectorError):
                await connector.stat("tenant/a.bin")
        finally:
            await connector.aclose()
    assert 1 <= len(hostile.requests) <= 4
    assert target.connections == [], "the redirect to the internal address was followed"
    assert isinstance(caught.value, Rejected) and "redirect" in caught.value.detail
