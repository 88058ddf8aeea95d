"""tus uploads: state in the database, bytes in the quarantine store, so any replica serves any request.

PATCHes on one upload are serialized by a Redis lock (redis-py's token-checked Lock, extended while the
body streams, expiring on its own if a gateway dies). The offset is the database's `size`; bytes written
past it by a request that died are overwritten by the next PATCH at that offset.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import LockError

from gateway.audit import AuditContext, Target
from gateway.errors import Conflict, NotFound
from gateway.security.principal import Principal
from gateway.tus import protocol
from gateway.tus.protocol import ChecksumMismatch, OffsetMismatch, TusError, UploadGone, UploadLocked
from gateway.uploads import filenames
from gateway.uploads.ingest import optional_uuid
from gateway.uploads.models import Upload, UploadState
from gateway.uploads.quarantine import LimitExceeded, quarantine_key
from gateway.uploads.repository import UploadRepository
from gateway.uploads.service import FileTooLarge, IncomingFile, UploadService, checked_path, normalise_type

LOCK_TTL = 30.0
RUNNING_HASHES = 1024
LOCK_WAIT = 5.0


@dataclass(frozen=True, slots=True)
class TusState:
    id: uuid.UUID
    offset: int
    length: int
    expires_at: datetime | None
    metadata: str | None = None


class TusService:
    def __init__(self, *, uploads: UploadService, redis: Redis, prefix: str, expiry: int) -> None:
        self.uploads = uploads
        self.redis = redis
        self.prefix = prefix
        self.expiry = expiry
        self._hashes: OrderedDict[uuid.UUID, tuple[int, Any]] = OrderedDict()

    async def max_size(self, principal: Principal | None, ceiling: int) -> int:
        if principal is None:
            return ceiling
        return (await self.uploads.tenant_policy(principal.tenant_id)).max_file_size

    async def create(
        self,
        principal: Principal,
        ctx: AuditContext,
        *,
        length: int | None,
        metadata: str | None,
        body: AsyncIterator[bytes] | None,
        checksum: str | None,
    ) -> TusState:
        if length is None:
            raise TusError("Upload-Length is required (deferred length is not supported)")
        meta = protocol.parse_metadata(metadata)
        policy = await self.uploads.tenant_policy(principal.tenant_id)
        self.uploads.refuse_early(policy, IncomingFile(meta.get("filename"), meta.get("filetype"), length))
        upload_id = uuid.uuid4()
        expires = datetime.now(UTC) + timedelta(seconds=self.expiry)
        async with self.uploads.db.tenant(principal.tenant_id) as session:
            await UploadRepository(session, principal.tenant_id).add(
                Upload(
                    id=upload_id,
                    owner_id=principal.user_id,
                    filename=filenames.sanitize(meta.get("filename")),
                    original_filename=filenames.escape_original(meta.get("filename")),
                    declared_type=normalise_type(meta.get("filetype")),
                    state=UploadState.RECEIVING.value,
                    connection_id=optional_uuid(meta.get("connection_id"), "connection_id"),
                    path=checked_path(meta.get("path")),
                    storage_key=quarantine_key(principal.tenant_id, upload_id),
                    expected_size=length,
                    expires_at=expires,
                )
            )
        state = TusState(upload_id, 0, length, expires)
        if body is not None:
            state = await self.patch(principal, ctx, upload_id, offset=0, body=body, checksum=checksum)
        elif length == 0:
            await self._finish(principal, ctx, upload_id, 0)
        return state

    async def _receiving(self, principal: Principal, upload_id: uuid.UUID) -> Upload:
        async with self.uploads.db.tenant(principal.tenant_id) as session:
            upload = await UploadRepository(session, principal.tenant_id).get(upload_id)
        # An unfinished upload belongs to whoever is sending it; anyone else sees nothing.
        if upload is None or upload.owner_id != principal.user_id:
            raise NotFound()
        if upload.expires_at is not None and upload.expires_at < datetime.now(UTC):
            raise UploadGone("this upload has expired")
        return upload

    async def head(self, principal: Principal, upload_id: uuid.UUID) -> TusState:
        upload = await self._receiving(principal, upload_id)
        return TusState(upload.id, upload.size, upload.expected_size or upload.size, upload.expires_at)

    async def patch(
        self,
        principal: Principal,
        ctx: AuditContext,
        upload_id: uuid.UUID,
        *,
        offset: int,
        body: AsyncIterator[bytes],
        checksum: str | None,
    ) -> TusState:
        expected = protocol.parse_checksum(checksum)
        lock = self.redis.lock(
            f"{self.prefix}tus:lock:{upload_id}", timeout=LOCK_TTL, blocking_timeout=LOCK_WAIT
        )
        if not await lock.acquire():
            raise UploadLocked("another request is writing to this upload; retry after it finished")
        keeper = asyncio.create_task(_keep(lock))
        try:
            upload = await self._receiving(principal, upload_id)
            if upload.state != UploadState.RECEIVING.value:
                raise OffsetMismatch("this upload is already complete")
            if offset != upload.size:
                raise OffsetMismatch(f"Upload-Offset must be {upload.size}")
            length = upload.expected_size or 0
            hasher = hashlib.new(expected[0]) if expected else None
            running = self._running_hash(upload_id, offset)
            try:
                written, _ = await self.uploads.store.write(
                    upload.storage_key,
                    _hashing(_hashing(body, hasher), running),
                    limit=length,
                    offset=offset,
                    verify=(lambda: _check(hasher, expected)) if expected else None,
                )
            except LimitExceeded:
                raise FileTooLarge("the body goes past Upload-Length") from None
            new_offset = offset + written
            async with self.uploads.db.tenant(principal.tenant_id) as session:
                moved = await UploadRepository(session, principal.tenant_id).transition(
                    upload_id,
                    [UploadState.RECEIVING.value],
                    UploadState.RECEIVING.value,
                    size=new_offset,
                    expires_at=datetime.now(UTC) + timedelta(seconds=self.expiry),
                )
            if moved is None:
                raise NotFound()
            if running is not None:
                self._remember_hash(upload_id, new_offset, running)
            if new_offset == length:
                await self._finish(principal, ctx, upload_id, new_offset)
            return TusState(upload_id, new_offset, length, moved.expires_at)
        finally:
            keeper.cancel()
            with contextlib.suppress(LockError):
                await lock.release()

    def _running_hash(self, upload_id: uuid.UUID, offset: int) -> Any:
        """A copy of this process's SHA-256 of the upload up to `offset`, or None when it did not see it all.

        The copy is fed during the PATCH and kept only if the PATCH succeeds, so a discarded chunk never
        pollutes it. Another replica serving a chunk simply means a full re-read at the end.
        """
        if offset == 0:
            return hashlib.sha256()
        known = self._hashes.get(upload_id)
        return known[1].copy() if known and known[0] == offset else None

    def _remember_hash(self, upload_id: uuid.UUID, offset: int, hasher: Any) -> None:
        self._hashes[upload_id] = (offset, hasher)
        self._hashes.move_to_end(upload_id)
        while len(self._hashes) > RUNNING_HASHES:
            self._hashes.popitem(last=False)

    async def _finish(self, principal: Principal, ctx: AuditContext, upload_id: uuid.UUID, size: int) -> None:
        """The last byte arrived: make it one file, hash it and hand it to the scan pipeline under the same id."""
        key = quarantine_key(principal.tenant_id, upload_id)
        await self.uploads.store.seal(key)
        known = self._hashes.pop(upload_id, None)
        # This process saw every byte in order: its running hash is the file's; otherwise read it back.
        digest = known[1].hexdigest() if known and known[0] == size else await self.uploads.store.sha256(key)
        await self.uploads.quarantine(
            principal.tenant_id, upload_id, size=size, sha256=digest, ctx=ctx, actor_principal=principal
        )

    async def terminate(self, principal: Principal, ctx: AuditContext, upload_id: uuid.UUID) -> None:
        upload = await self._receiving(principal, upload_id)
        if upload.state != UploadState.RECEIVING.value:
            raise Conflict("a finished upload is deleted with DELETE /v1/uploads/{id}")
        async with self.uploads.db.tenant(principal.tenant_id) as session:
            row = await UploadRepository(session, principal.tenant_id).get(upload_id)
            if row is not None:
                await session.delete(row)
                await self.uploads.audit.record(
                    session,
                    principal.tenant_id,
                    ctx,
                    action="upload.delete",
                    outcome="success",
                    actor=principal.actor,
                    target=Target("upload", str(upload_id)),
                    details={"tus": "terminated"},
                )
        await self.uploads.store.delete(upload.storage_key)


async def _keep(lock: Any) -> None:
    """Extend the lock while a long body streams in."""
    while True:
        await asyncio.sleep(LOCK_TTL / 3)
        with contextlib.suppress(LockError):
            await lock.reacquire()


async def _hashing(body: AsyncIterator[bytes], hasher: Any) -> AsyncIterator[bytes]:
    async for chunk in body:
        if hasher is not None:
            hasher.update(chunk)
        yield chunk


def _check(hasher: Any, expected: tuple[str, bytes] | None) -> None:
    if hasher is not None and expected is not None and not hmac.compare_digest(hasher.digest(), expected[1]):
        raise ChecksumMismatch("the body does not match Upload-Checksum; it was discarded")
