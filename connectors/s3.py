"""The `s3` connector: a bucket on AWS S3 or an S3-compatible service, through boto3.

boto3 is blocking, so every call runs in a worker thread (`asyncio.to_thread`) on ONE client per connector
(botocore clients are thread-safe and keep a connection pool). Uploads are streamed: a stream shorter than
one part is a single PutObject; a longer one is a multipart upload of `PART`-sized parts, sending up to
`MAX_IN_FLIGHT` parts while the next one fills, so at most four parts (32 MiB) are in memory. Any failure,
cancellation included, aborts the multipart upload, so no invisible parts are left behind (and billed).

Every request goes through `connectors.outbound` (attached to both clients): the endpoint's name is
resolved and checked against the address rule at each connection, not only when the connection was
configured.

Credentials are the stored keys only, never boto3's default chain (the gateway's own AWS identity must
not leak into a tenant's connection). With `role_arn`, the stored keys assume that role through STS and
the temporary credentials are refreshed before they expire.

Errors are translated here into `connectors.base` errors with fixed sentences: an SDK message can hold a
signed URL or a request id worth nothing to a tenant, so none is ever copied into a detail.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import boto3
import botocore.session
from botocore.config import Config
from botocore.credentials import DeferredRefreshableCredentials
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    HTTPClientError,
    NoCredentialsError,
    ParamValidationError,
    PartialCredentialsError,
)

from connectors.base import (
    CHUNK,
    AuthFailed,
    ConnectorError,
    ObjectInfo,
    ObjectNotFound,
    ObjectPage,
    Rejected,
    Throttled,
    Unavailable,
)
from connectors.outbound import Outbound
from connectors.schemas import S3Config, S3Secrets

MIB = 1024 * 1024
PART = 8 * MIB  # below this a single PutObject; the multipart part size otherwise
MAX_IN_FLIGHT = 3  # parts sent concurrently by one put (boto3's own upload_file sends up to 10)
MAX_PARTS = 10_000  # S3's limit; very large objects get bigger parts
MAX_KEYS = 1000  # S3 answers at most 1000 keys per ListObjectsV2 page
ROLE_SESSION_NAME = "filegate"

_AUTH_CODES = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AccessDenied",
        "AllAccessDisabled",
        "AccountProblem",
        "InvalidToken",
        "ExpiredToken",
        "TokenRefreshRequired",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "AuthorizationHeaderMalformed",
        "KMS.AccessDeniedException",
    }
)
_THROTTLE_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestLimitExceeded",
        "TooManyRequests",
        "TooManyRequestsException",
        "ServiceUnavailable",
        "503",
        "429",
    }
)
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NotFound", "404"})
_SAFE_CODE = re.compile(r"\A[A-Za-z][A-Za-z0-9.]{0,63}\Z")


def part_size_for(size: int) -> int:
    """`PART`, or more (whole MiB) when the object would otherwise need more than S3's 10,000 parts."""
    if size <= PART * MAX_PARTS:
        return PART
    needed = -(-size // (MAX_PARTS - 100))  # a little headroom for a stream longer than announced
    return -(-needed // MIB) * MIB


def map_error(exc: BaseException, *, missing: str = "object") -> ConnectorError:
    """The safe connector error for a boto3/botocore failure. `missing` says what a bare 404 means:
    "object" (ObjectNotFound) or "bucket" (Rejected)."""
    if isinstance(exc, ConnectorError):
        return exc
    if isinstance(exc, ClientError):
        response = getattr(exc, "response", None) or {}
        code = str((response.get("Error") or {}).get("Code") or "")
        status = int((response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0)
        if code == "NoSuchBucket":
            return Rejected("the bucket does not exist")
        if code in _AUTH_CODES or status == 403:
            return AuthFailed("the storage service refused the credentials or their rights")
        if code in _THROTTLE_CODES or status in (429, 503):
            return Throttled("the storage service is throttling requests; try again later")
        if code in _NOT_FOUND_CODES or status == 404:
            if missing == "bucket":
                return Rejected("the bucket does not exist")
            return ObjectNotFound("no such object")
        if code == "NoSuchUpload":
            return Unavailable("the multipart upload was aborted by the storage service")
        if status >= 500:
            return Unavailable("the storage service answered with a server error")
        if _SAFE_CODE.match(code):
            return Rejected(f"the storage service refused the request ({code})")
        return Rejected("the storage service refused the request")
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return AuthFailed("the connection has no usable credentials")
    if isinstance(exc, ParamValidationError):
        return Rejected("the request is not valid for the storage service")
    if isinstance(exc, ConnectionError | HTTPClientError):
        return Unavailable("the storage service could not be reached")
    if isinstance(exc, BotoCoreError):
        return Unavailable("the storage service could not be used")
    if isinstance(exc, OSError):
        return Unavailable("the storage service could not be reached")
    raise exc  # a programming error: let it surface as it is


class S3Connector:
    def __init__(self, config: S3Config, secrets: S3Secrets, outbound: Outbound) -> None:
        self.bucket = config.bucket
        style = config.addressing_style or ("path" if config.endpoint_url else "auto")
        client_config = Config(
            region_name=config.region,
            signature_version="s3v4",
            s3={"addressing_style": style},
            retries={"mode": "standard", "max_attempts": 3},
            connect_timeout=10,
            read_timeout=60,
            max_pool_connections=10,
            # Checksums only where S3 requires them: many S3-compatible servers refuse the CRC headers
            # newer botocore sends by default.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        self._sender = outbound.botocore_sender(client_config)
        session, self._sts = _session(config, secrets, client_config)
        self._client: Any = session.client("s3", endpoint_url=config.endpoint_url, config=client_config)
        for client in (self._client, self._sts):
            if client is not None:
                self._sender.attach(client)
        self._sse: dict[str, str] = {}
        if config.sse_kms_key_id:
            self._sse = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": config.sse_kms_key_id}

    def __repr__(self) -> str:
        return f"S3Connector(bucket={self.bucket!r})"

    async def _call(self, method: Callable[..., Any], /, *, missing: str = "object", **kwargs: Any) -> Any:
        try:
            return await asyncio.to_thread(method, **kwargs)
        except Exception as exc:
            raise map_error(exc, missing=missing) from None

    # --- put ------------------------------------------------------------------------------------------
    async def put(
        self, key: str, chunks: AsyncIterator[bytes], *, size: int, content_type: str | None
    ) -> ObjectInfo:
        extra: dict[str, str] = dict(self._sse)
        if content_type:
            extra["ContentType"] = content_type
        part_size = part_size_for(size)
        upload = _Multipart(self, key, extra)
        buffer = bytearray()
        written = 0
        try:
            async for chunk in chunks:
                written += len(chunk)
                if written > size:
                    raise Rejected("the stream did not have the announced size")
                buffer += chunk
                while len(buffer) >= part_size:
                    with memoryview(buffer) as view:  # one copy, not two
                        part = bytes(view[:part_size])
                    del buffer[:part_size]
                    await upload.send(part)
            if written != size:
                raise Rejected("the stream did not have the announced size")
            if upload.upload_id is None:
                await self._call(
                    self._client.put_object, Bucket=self.bucket, Key=key, Body=bytes(buffer), **extra
                )
            else:
                if buffer:
                    await upload.send(bytes(buffer))
                    buffer.clear()
                await upload.complete()
        except BaseException:
            await upload.abort()
            raise
        return ObjectInfo(key, written)

    # --- read -----------------------------------------------------------------------------------------
    async def get(self, key: str) -> AsyncIterator[bytes]:
        response = await self._call(self._client.get_object, Bucket=self.bucket, Key=key)
        body = response["Body"]
        try:
            while True:
                try:
                    chunk = await asyncio.to_thread(body.read, CHUNK)
                except Exception as exc:
                    raise map_error(exc) from None
                if not chunk:
                    return
                yield chunk
        finally:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(body.close)

    async def stat(self, key: str) -> ObjectInfo:
        head = await self._call(self._client.head_object, Bucket=self.bucket, Key=key)
        return ObjectInfo(key, int(head["ContentLength"]), head.get("LastModified"))

    async def list(self, prefix: str, *, cursor: str | None, limit: int) -> ObjectPage:
        kwargs: dict[str, Any] = {
            "Bucket": self.bucket,
            "Prefix": prefix,
            "MaxKeys": max(1, min(limit, MAX_KEYS)),
        }
        if cursor:
            kwargs["ContinuationToken"] = cursor
        page = await self._call(self._client.list_objects_v2, missing="bucket", **kwargs)
        items = [
            ObjectInfo(item["Key"], int(item["Size"]), item.get("LastModified"))
            for item in page.get("Contents") or []
        ]
        next_cursor = page.get("NextContinuationToken") if page.get("IsTruncated") else None
        return ObjectPage(items, next_cursor or None)

    async def delete(self, key: str) -> None:
        with contextlib.suppress(ObjectNotFound):
            await self._call(self._client.delete_object, Bucket=self.bucket, Key=key)

    async def test(self) -> str:
        await self._call(self._client.head_bucket, missing="bucket", Bucket=self.bucket)
        return "the bucket is reachable with these credentials"

    async def aclose(self) -> None:
        for client in (self._client, self._sts):
            if client is not None:
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(client.close)
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self._sender.close)


class _Multipart:
    """One multipart upload, started on its first part. Up to `MAX_IN_FLIGHT` parts are sent at once
    while the caller fills the next one (memory: that many parts plus one)."""

    def __init__(self, connector: S3Connector, key: str, extra: dict[str, str]) -> None:
        self.connector = connector
        self.key = key
        self.extra = extra
        self.upload_id: str | None = None
        self.parts: builtins.list[dict[str, Any]] = []
        self.in_flight: builtins.list[asyncio.Task[None]] = []
        self.creating: asyncio.Future[Any] | None = None

    async def send(self, data: bytes) -> None:
        c = self.connector
        if self.upload_id is None:
            # Shielded (like the parts): a cancelled caller must still learn the id, to abort it.
            self.creating = asyncio.ensure_future(
                c._call(c._client.create_multipart_upload, Bucket=c.bucket, Key=self.key, **self.extra)
            )
            created = await asyncio.shield(self.creating)
            self.upload_id = str(created["UploadId"])
        while len(self.in_flight) >= MAX_IN_FLIGHT:
            # Shielded: cancelling the caller must not orphan a part whose thread still sends it.
            await asyncio.shield(self.in_flight[0])
            self.in_flight.pop(0)
        number = len(self.parts) + 1
        self.parts.append({"PartNumber": number})
        self.in_flight.append(asyncio.create_task(self._upload_part(number, data)))

    async def _upload_part(self, number: int, data: bytes) -> None:
        c = self.connector
        answer = await c._call(
            c._client.upload_part,
            Bucket=c.bucket,
            Key=self.key,
            UploadId=self.upload_id,
            PartNumber=number,
            Body=data,
        )
        self.parts[number - 1]["ETag"] = answer["ETag"]

    async def wait(self) -> None:
        # Every part settles (shielded) before this returns or raises the first failure, so an abort that
        # follows never races a part still being sent.
        if self.in_flight:
            results = await asyncio.shield(asyncio.gather(*self.in_flight, return_exceptions=True))
            self.in_flight = []
            for result in results:
                if isinstance(result, BaseException):
                    raise result

    async def complete(self) -> None:
        await self.wait()
        c = self.connector
        await c._call(
            c._client.complete_multipart_upload,
            Bucket=c.bucket,
            Key=self.key,
            UploadId=self.upload_id,
            MultipartUpload={"Parts": self.parts},
        )
        self.upload_id = self.creating = None

    async def abort(self) -> None:
        """Abort the upload if one was started. Shielded: a second cancellation does not skip it."""
        if self.creating is None:
            return
        cleanup = asyncio.ensure_future(self._abort())
        with contextlib.suppress(BaseException):
            await asyncio.shield(cleanup)

    async def _abort(self) -> None:
        # A part still being sent must finish first, or it could land after the abort and be kept.
        if self.upload_id is None and self.creating is not None:
            with contextlib.suppress(BaseException):
                self.upload_id = str((await self.creating)["UploadId"])
        with contextlib.suppress(BaseException):
            await self.wait()
        if self.upload_id is None:
            return
        c = self.connector
        with contextlib.suppress(ConnectorError):
            await c._call(
                c._client.abort_multipart_upload, Bucket=c.bucket, Key=self.key, UploadId=self.upload_id
            )
        self.upload_id = None


def _session(config: S3Config, secrets: S3Secrets, client_config: Config) -> tuple[Any, Any]:
    """A boto3 session with the stored keys, or with a role assumed through STS by those keys (and
    then the STS client too)."""
    base = boto3.session.Session(
        aws_access_key_id=secrets.access_key_id,
        aws_secret_access_key=secrets.secret_access_key,
        aws_session_token=secrets.session_token,
        region_name=config.region,
    )
    if not config.role_arn:
        return base, None
    sts = base.client(
        "sts",
        endpoint_url=config.endpoint_url,
        config=Config(
            region_name=config.region,
            retries={"mode": "standard", "max_attempts": 3},
            connect_timeout=client_config.connect_timeout,
            read_timeout=client_config.read_timeout,
        ),
    )
    role_arn = config.role_arn
    external_id = config.external_id

    def assume() -> dict[str, str]:
        kwargs: dict[str, Any] = {"RoleArn": role_arn, "RoleSessionName": ROLE_SESSION_NAME}
        if external_id:
            kwargs["ExternalId"] = external_id
        try:
            credentials = sts.assume_role(**kwargs)["Credentials"]
        except ClientError as exc:
            mapped = map_error(exc)
            if isinstance(mapped, AuthFailed | Rejected | ObjectNotFound):
                raise AuthFailed("the role could not be assumed with the stored keys") from None
            raise mapped from None
        except Exception as exc:
            raise map_error(exc) from None
        return {
            "access_key": credentials["AccessKeyId"],
            "secret_key": credentials["SecretAccessKey"],
            "token": credentials["SessionToken"],
            "expiry_time": credentials["Expiration"].isoformat(),
        }

    # Fetched on first use (inside a worker thread, never in the constructor), and again by botocore
    # before the temporary credentials expire.
    botocore_session = botocore.session.get_session()
    botocore_session._credentials = DeferredRefreshableCredentials(
        refresh_using=assume, method="sts-assume-role"
    )
    return boto3.session.Session(botocore_session=botocore_session, region_name=config.region), sts
