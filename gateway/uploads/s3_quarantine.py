"""The quarantine store on S3 (or anything speaking S3: SeaweedFS, MinIO, Ceph), for gateways and workers on
several hosts.

Objects are `<prefix>/<tenant_id>/<upload_id>`, the key built from UUIDs only (as in the local store). A
write streams into an S3 multipart upload of `PART_SIZE` parts buffered in memory, one part in flight per
write (a body under one part is a single PUT); any failure, an exceeded limit or a failed `verify` aborts
the multipart upload, so nothing is left behind and nothing half-written becomes visible.

S3 objects cannot be appended to, so a write at an offset > 0 (a tus PATCH) becomes an object of its own,
`<object>.part/<offset:020d>`; `size`, `read`, `sha256` and `delete` see the base object and its parts as
one file, and `seal` (called when the last byte arrived) concatenates them into the base object. A write
at an offset first removes the parts at or after it: the database's offset is the truth, and a part past
it is what a request that died after writing (but before the database moved) left behind.

A gateway that dies in the middle of a write leaves an incomplete multipart upload that `delete` aborts;
buckets should also carry a lifecycle rule `AbortIncompleteMultipartUpload` for those nobody deletes.
Every boto3 call runs in a thread (`asyncio.to_thread`); one client serves them all (clients are
thread-safe).
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from gateway.uploads.quarantine import READ_CHUNK, LimitExceeded

PART_SIZE = 8 * 1024 * 1024
MIN_COPY_PART = 5 * 1024 * 1024  # S3's smallest part but the last: upload_part_copy is used from here on
PART_SUFFIX = ".part/"
_MISSING = {"404", "NoSuchKey", "NotFound"}


class SealError(RuntimeError):
    """The parts of an object do not follow each other; it cannot be sealed."""


@dataclass(frozen=True, slots=True)
class _Part:
    offset: int
    key: str
    size: int


@dataclass(frozen=True, slots=True)
class _Layout:
    base: int | None  # size of the base object, None when it does not exist
    parts: list[_Part]  # by offset

    @property
    def size(self) -> int:
        return (self.base or 0) + sum(p.size for p in self.parts)


def make_client(*, endpoint_url: str | None, region: str) -> Any:
    """A boto3 S3 client; credentials come from boto3's default chain (AWS_ACCESS_KEY_ID, profiles, roles)."""
    config = Config(
        region_name=region,
        retries={"max_attempts": 5, "mode": "standard"},
        max_pool_connections=64,
        # Anything but AWS itself (SeaweedFS, MinIO, ...) wants path-style addressing.
        s3={"addressing_style": "path" if endpoint_url else "auto"},
    )
    return boto3.session.Session().client("s3", endpoint_url=endpoint_url, config=config)


class S3Quarantine:
    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        client: Any | None = None,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        part_size: int = PART_SIZE,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = client if client is not None else make_client(endpoint_url=endpoint_url, region=region)
        self.part_size = part_size

    def object_key(self, key: str) -> str:
        """`<prefix>/<tenant_id>/<upload_id>`; anything but two UUIDs is refused."""
        tenant, sep, upload = key.partition("/")
        if not sep:
            raise ValueError("key must be <tenant_id>/<upload_id>")
        name = f"{uuid.UUID(tenant)}/{uuid.UUID(upload)}"
        return f"{self.prefix}/{name}" if self.prefix else name

    # --- the QuarantineStore interface ---------------------------------------------------------------
    async def write(
        self,
        key: str,
        chunks: AsyncIterator[bytes],
        *,
        limit: int,
        offset: int = 0,
        verify: Callable[[], None] | None = None,
        durable: bool = True,  # a completed S3 PUT or multipart upload is durable already
        hashers: Sequence[Any] = (),
    ) -> tuple[int, str | None]:
        obj = self.object_key(key)
        # Whatever lies at or past this offset was never acknowledged: the new bytes replace it.
        await self._drop_parts(obj, from_offset=offset)
        hasher = hashlib.sha256() if offset == 0 else None
        target = obj if offset == 0 else _part_key(obj, offset)
        feed = [hasher, *hashers] if hasher is not None else list(hashers)
        written = await self._upload(target, chunks, limit=limit, offset=offset, hashers=feed, verify=verify)
        return written, hasher.hexdigest() if hasher is not None else None

    async def read(self, key: str) -> AsyncIterator[bytes]:
        obj = self.object_key(key)
        layout = await self._layout(obj)
        if layout.base is None and not layout.parts:
            raise FileNotFoundError(obj)
        sources = ([obj] if layout.base is not None else []) + [p.key for p in layout.parts]
        for source in sources:
            async for chunk in self._read_object(source):
                yield chunk

    async def size(self, key: str) -> int:
        return (await self._layout(self.object_key(key))).size

    async def delete(self, key: str) -> None:
        obj = self.object_key(key)
        layout = await self._layout(obj)
        keys = ([obj] if layout.base is not None else []) + [p.key for p in layout.parts]
        await self._delete_keys(keys)
        # A writer that died mid-body left its multipart upload open: it goes with the object.
        pending = await asyncio.to_thread(self.client.list_multipart_uploads, Bucket=self.bucket, Prefix=obj)
        for up in pending.get("Uploads") or []:
            if up["Key"] == obj or up["Key"].startswith(obj + PART_SUFFIX):
                await self._abort(up["Key"], up["UploadId"])

    async def sha256(self, key: str) -> str:
        h = hashlib.sha256()
        async for chunk in self.read(key):
            h.update(chunk)
        return h.hexdigest()

    async def seal(self, key: str) -> None:
        """Make the base object the whole file: base + parts concatenated (streamed, `PART_SIZE` parts;
        server-side copies for whole `PART_SIZE` ranges), then the parts removed."""
        obj = self.object_key(key)
        layout = await self._layout(obj)
        if not layout.parts:
            if layout.base is None:  # an empty upload never wrote a byte
                await asyncio.to_thread(self.client.put_object, Bucket=self.bucket, Key=obj, Body=b"")
            return
        sources: list[tuple[str, int]] = [(obj, layout.base)] if layout.base else []
        position = layout.base or 0
        for part in layout.parts:
            if part.offset != position:
                raise SealError(f"{obj}: part at {part.offset} does not follow byte {position}")
            sources.append((part.key, part.size))
            position += part.size
        await self._concatenate(obj, sources)
        await self._delete_keys([p.key for p in layout.parts])

    # --- internals -----------------------------------------------------------------------------------
    async def _upload(
        self,
        target: str,
        chunks: AsyncIterator[bytes],
        *,
        limit: int,
        offset: int,
        hashers: list[Any],
        verify: Callable[[], None] | None,
    ) -> int:
        multipart = _Multipart(self, target)
        buffer = bytearray()
        written = 0
        try:
            async for chunk in chunks:
                written += len(chunk)
                if offset + written > limit:
                    raise LimitExceeded()
                for hasher in hashers:
                    hasher.update(chunk)
                buffer += chunk
                while len(buffer) >= self.part_size:
                    await multipart.upload(bytes(buffer[: self.part_size]))
                    del buffer[: self.part_size]
            if verify is not None:
                verify()
            if multipart.upload_id is None:
                if written or offset == 0:  # an empty PATCH leaves no part behind
                    await asyncio.to_thread(
                        self.client.put_object, Bucket=self.bucket, Key=target, Body=bytes(buffer)
                    )
            else:
                if buffer:
                    await multipart.upload(bytes(buffer))
                await multipart.complete()
        except BaseException:
            await multipart.abort()
            raise
        return written

    async def _concatenate(self, target: str, sources: list[tuple[str, int]]) -> None:
        multipart = _Multipart(self, target)
        buffer = bytearray()
        try:
            for source, size in sources:
                start = 0
                # Whole parts straight from the source, server-side, while nothing waits in the buffer.
                while not buffer and size - start >= self.part_size and self.part_size >= MIN_COPY_PART:
                    await multipart.copy(source, start, start + self.part_size - 1)
                    start += self.part_size
                if start < size:
                    async for chunk in self._read_object(source, start=start):
                        buffer += chunk
                        while len(buffer) >= self.part_size:
                            await multipart.upload(bytes(buffer[: self.part_size]))
                            del buffer[: self.part_size]
            if multipart.upload_id is None:
                await asyncio.to_thread(
                    self.client.put_object, Bucket=self.bucket, Key=target, Body=bytes(buffer)
                )
            else:
                if buffer:
                    await multipart.upload(bytes(buffer))
                await multipart.complete()
        except BaseException:
            await multipart.abort()
            raise

    async def _read_object(self, obj: str, *, start: int = 0) -> AsyncIterator[bytes]:
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": obj}
        if start:
            kwargs["Range"] = f"bytes={start}-"
        try:
            response = await asyncio.to_thread(self.client.get_object, **kwargs)
        except ClientError as exc:
            if _missing(exc):
                raise FileNotFoundError(obj) from None
            raise
        body = response["Body"]
        try:
            while chunk := await asyncio.to_thread(body.read, READ_CHUNK):
                yield chunk
        finally:
            await asyncio.to_thread(body.close)

    async def _layout(self, obj: str) -> _Layout:
        """The base object and its parts, from one listing (keys are UUIDs: the prefix matches nothing else)."""
        base: int | None = None
        parts: list[_Part] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": obj}
            if token:
                kwargs["ContinuationToken"] = token
            page = await asyncio.to_thread(self.client.list_objects_v2, **kwargs)
            for item in page.get("Contents") or []:
                name, size = item["Key"], int(item["Size"])
                if name == obj:
                    base = size
                elif name.startswith(obj + PART_SUFFIX):
                    suffix = name[len(obj) + len(PART_SUFFIX) :]
                    if suffix.isdigit():
                        parts.append(_Part(int(suffix), name, size))
            if not page.get("IsTruncated"):
                break
            token = page.get("NextContinuationToken")
        parts.sort(key=lambda p: p.offset)
        return _Layout(base, parts)

    async def _drop_parts(self, obj: str, *, from_offset: int) -> None:
        layout = await self._layout(obj)
        await self._delete_keys([p.key for p in layout.parts if p.offset >= from_offset])

    async def _delete_keys(self, keys: list[str]) -> None:
        for i in range(0, len(keys), 1000):
            batch = keys[i : i + 1000]
            response = await asyncio.to_thread(
                self.client.delete_objects,
                Bucket=self.bucket,
                Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True},
            )
            errors = [e for e in response.get("Errors") or [] if e.get("Code") not in _MISSING]
            if errors:
                raise OSError(f"could not delete {len(errors)} quarantine object(s): {errors[0].get('Code')}")

    async def _abort(self, obj: str, upload_id: str) -> None:
        try:
            await asyncio.to_thread(
                self.client.abort_multipart_upload, Bucket=self.bucket, Key=obj, UploadId=upload_id
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("NoSuchUpload", *_MISSING):
                raise


class _Multipart:
    """One multipart upload, created on its first part; parts go one at a time."""

    def __init__(self, store: S3Quarantine, key: str) -> None:
        self.store = store
        self.key = key
        self.upload_id: str | None = None
        self.parts: list[dict[str, Any]] = []

    async def _start(self) -> str:
        if self.upload_id is None:
            response = await asyncio.to_thread(
                self.store.client.create_multipart_upload, Bucket=self.store.bucket, Key=self.key
            )
            self.upload_id = str(response["UploadId"])
        return self.upload_id

    async def upload(self, data: bytes) -> None:
        upload_id = await self._start()
        number = len(self.parts) + 1
        response = await asyncio.to_thread(
            self.store.client.upload_part,
            Bucket=self.store.bucket,
            Key=self.key,
            UploadId=upload_id,
            PartNumber=number,
            Body=data,
        )
        self.parts.append({"PartNumber": number, "ETag": response["ETag"]})

    async def copy(self, source: str, first: int, last: int) -> None:
        upload_id = await self._start()
        number = len(self.parts) + 1
        response = await asyncio.to_thread(
            self.store.client.upload_part_copy,
            Bucket=self.store.bucket,
            Key=self.key,
            UploadId=upload_id,
            PartNumber=number,
            CopySource={"Bucket": self.store.bucket, "Key": source},
            CopySourceRange=f"bytes={first}-{last}",
        )
        self.parts.append({"PartNumber": number, "ETag": response["CopyPartResult"]["ETag"]})

    async def complete(self) -> None:
        assert self.upload_id is not None
        await asyncio.to_thread(
            self.store.client.complete_multipart_upload,
            Bucket=self.store.bucket,
            Key=self.key,
            UploadId=self.upload_id,
            MultipartUpload={"Parts": self.parts},
        )
        self.upload_id = None  # done: nothing to abort any more

    async def abort(self) -> None:
        if self.upload_id is not None:
            upload_id, self.upload_id = self.upload_id, None
            await self.store._abort(self.key, upload_id)


def _part_key(obj: str, offset: int) -> str:
    return f"{obj}{PART_SUFFIX}{offset:020d}"


def _missing(exc: ClientError) -> bool:
    return str(exc.response.get("Error", {}).get("Code")) in _MISSING
