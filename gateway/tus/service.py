"""tus uploads: state in the database, bytes in the quarantine store, so any replica serves any request.

PATCHes on one upload are serialized by a Redis lock (redis-py's token-checked Lock, extended while the
body streams, expiring on its own if a gateway dies). The offset is the database's `size`, or the stored
bytes when there are fewer: a PATCH is not synced to disk on its own (only the last one makes the whole file
durable, in `seal`, before the upload is quarantined), so after a crash of the host the database may count
bytes the disk lost; the client then resumes from what is really there. Bytes stored past the offset (a
request that died after writing, before the database moved) are replaced by the next PATCH at that offset.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import hmac
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

from redis.asyncio import Redis
from redis.exceptions import LockError
from sqlalchemy import Table, bindparam, update

from gateway.audit import AuditContext, Target
from gateway.db import after_commit
from gateway.errors import Conflict, NotFound
from gateway.security.principal import Principal
from gateway.tus import protocol
from gateway.tus.protocol import ChecksumMismatch, OffsetMismatch, TusError, UploadGone, UploadLocked
from gateway.uploads import filenames
from gateway.uploads.ingest import optional_uuid
from gateway.uploads.models import Upload, UploadState
from gateway.uploads.quarantine import LimitExceeded, OffsetBeyondEnd, quarantine_key
from gateway.uploads.repository import UploadRepository
from gateway.uploads.service import FileTooLarge, IncomingFile, UploadService, checked_path, normalise_type

LOCK_TTL = 30.0
RUNNING_HASHES = 1024
LOCK_WAIT = 5.0


_UPLOADS: Table = Upload.__table__  # type: ignore[assignment]
# A PATCH's one write, built once (it runs for every chunk of every upload): a compare-and-set on the offset
# the database had, so any other move since (another replica, a deletion, completion) is not overwritten.
_ADVANCE = (
    update(_UPLOADS)
    .where(
        _UPLOADS.c.tenant_id == bindparam("b_tenant"),
        _UPLOADS.c.id == bindparam("b_upload"),
        _UPLOADS.c.state == UploadState.RECEIVING.value,
        _UPLOADS.c.size == bindparam("b_offset"),
    )
    .values(size=bindparam("b_new_offset"), expires_at=bindparam("b_expires_at"))
    .returning(_UPLOADS.c.id)
)


@dataclass(frozen=True, slots=True)
class TusState:
    id: uuid.UUID
    offset: int
    length: int
    expires_at: datetime | None
    metadata: str | None = None


@dataclass(frozen=True, slots=True)
class _Known:
    """An upload as this process last committed it (see `TusService._writable`)."""

    offset: int
    tenant_id: uuid.UUID
    owner_id: uuid.UUID
    length: int
    storage_key: str
    expires_at: datetime | None
    hasher: Any  # SHA-256 of every byte before the PATCH's offset, or None when this process did not see them


class TusService:
    def __init__(self, *, uploads: UploadService, redis: Redis, prefix: str, expiry: int) -> None:
        self.uploads = uploads
        self.redis = redis
        self.prefix = prefix
        self.expiry = expiry
        self._known: OrderedDict[uuid.UUID, _Known] = OrderedDict()

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
            await self._finish(principal, ctx, upload_id, 0, hashlib.sha256())
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

    async def _offset(self, upload: Upload) -> int:
        """Where the client resumes: the database's offset, unless the store holds fewer bytes (a host crash
        lost unsynced PATCHes the database had counted)."""
        if upload.state != UploadState.RECEIVING.value or upload.size == 0:
            return upload.size
        return min(upload.size, await self.uploads.store.size(upload.storage_key))

    async def head(self, principal: Principal, upload_id: uuid.UUID) -> TusState:
        upload = await self._receiving(principal, upload_id)
        offset = await self._offset(upload)
        return TusState(upload.id, offset, upload.expected_size or upload.size, upload.expires_at)

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
            known, remembered = await self._writable(principal, upload_id, offset)
            hasher = hashlib.new(expected[0]) if expected else None
            running = known.hasher.copy() if known.hasher is not None else None
            try:
                written, _ = await self.uploads.store.write(
                    known.storage_key,
                    body,
                    limit=known.length,
                    offset=offset,
                    verify=(lambda: _check(hasher, expected)) if expected else None,
                    durable=False,  # the last PATCH makes the whole file durable (seal), before quarantine
                    hashers=[h for h in (hasher, running) if h is not None],
                )
            except LimitExceeded:
                raise FileTooLarge("the body goes past Upload-Length") from None
            except OffsetBeyondEnd:
                # The stored bytes end before the offset (a host crash lost unsynced PATCHes, or the upload
                # was deleted meanwhile): the database and the store say where the client resumes.
                self._known.pop(upload_id, None)
                await self._moved_meanwhile(principal, upload_id, known.storage_key)
            new_offset = offset + written
            if new_offset == known.length:
                # The last byte: seal (durable), then one transaction moves it to quarantine with its size.
                self._known.pop(upload_id, None)
                if remembered:
                    await self._still_at(principal, upload_id, known)
                await self._finish(principal, ctx, upload_id, new_offset, running)
                expires = datetime.now(UTC) + timedelta(seconds=self.expiry)
                return TusState(upload_id, new_offset, known.length, expires)
            expires = datetime.now(UTC) + timedelta(seconds=self.expiry)
            # A PATCH before the last one is not synced to disk, so neither is its offset: after a crash the
            # database may hold an older one (the client resumes there; the PATCH replaces what lies past
            # it), and one past the stored bytes is capped by `_offset`. The last PATCH's quarantine
            # transaction commits synchronously, after `seal` made every byte durable.
            async with self.uploads.db.tenant(principal.tenant_id, synchronous_commit=False) as session:
                moved = (
                    await session.execute(
                        _ADVANCE,
                        {
                            "b_tenant": principal.tenant_id,
                            "b_upload": upload_id,
                            "b_offset": known.offset,
                            "b_new_offset": new_offset,
                            "b_expires_at": expires,
                        },
                    )
                ).scalar_one_or_none()
            if moved is None:
                self._known.pop(upload_id, None)
                await self._moved_meanwhile(principal, upload_id, known.storage_key)
            self._remember(upload_id, replace(known, offset=new_offset, expires_at=expires, hasher=running))
            return TusState(upload_id, new_offset, known.length, expires)
        finally:
            keeper.cancel()
            with contextlib.suppress(LockError):
                await lock.release()

    async def _writable(self, principal: Principal, upload_id: uuid.UUID, offset: int) -> tuple[_Known, bool]:
        """What a PATCH at `offset` needs to know, or the reason it is refused. Called under the lock.

        When this process moved the database to `offset` itself (the common case: a client sending its
        chunks in turn), it answers from memory; the update after the write is a compare-and-set on that
        offset, so whatever changed meanwhile (another replica, a deletion) is caught there. Otherwise the
        database answers; an offset below its own is accepted only where the stored bytes end (after a host
        crash lost unsynced PATCHes). The flag says the answer came from memory."""
        known = self._known.get(upload_id)
        if (
            known is not None
            and known.offset == offset
            and known.tenant_id == principal.tenant_id
            and known.owner_id == principal.user_id
            and (known.expires_at is None or known.expires_at > datetime.now(UTC))
        ):
            return known, True
        upload = await self._receiving(principal, upload_id)
        if upload.state != UploadState.RECEIVING.value:
            raise OffsetMismatch("this upload is already complete")
        if offset != upload.size:
            current = await self._offset(upload)
            if offset != current:
                raise OffsetMismatch(f"Upload-Offset must be {current}")
        if offset == 0:
            hasher: Any = hashlib.sha256()
        elif known is not None and known.offset == offset:
            hasher = known.hasher  # this process saw every byte before `offset` (or None: it did not)
        else:
            hasher = None
        fresh = _Known(
            offset=upload.size,  # the database's, for the compare-and-set; the write goes at `offset`
            tenant_id=principal.tenant_id,
            owner_id=upload.owner_id,
            length=upload.expected_size or 0,
            storage_key=upload.storage_key,
            expires_at=upload.expires_at,
            hasher=hasher,
        )
        return fresh, False

    async def _still_at(self, principal: Principal, upload_id: uuid.UUID, known: _Known) -> None:
        """Before the last PATCH of an upload answered from memory completes it (quarantine is not a
        compare-and-set on the offset): the database must still be where this process left it."""
        async with self.uploads.db.tenant(principal.tenant_id) as session:
            upload = await UploadRepository(session, principal.tenant_id).get(upload_id)
        if upload is None or upload.state != UploadState.RECEIVING.value or upload.size != known.offset:
            await self._moved_meanwhile(principal, upload_id, known.storage_key)

    async def _moved_meanwhile(
        self, principal: Principal, upload_id: uuid.UUID, storage_key: str
    ) -> NoReturn:
        """The upload is no longer where this PATCH started from (another replica, a deletion): say where."""
        upload = await self._unless_gone(principal, upload_id, storage_key)
        if upload.state != UploadState.RECEIVING.value:
            raise OffsetMismatch("this upload is already complete")
        raise OffsetMismatch(f"Upload-Offset must be {await self._offset(upload)}")

    def _remember(self, upload_id: uuid.UUID, known: _Known) -> None:
        """What this process committed for an upload (offset, and the SHA-256 of every byte before it when it
        saw them all), kept only after a PATCH succeeded, so a discarded chunk never pollutes it. Another
        replica serving a chunk simply means a database read next time and a full re-read of the file at
        the end."""
        self._known[upload_id] = known
        self._known.move_to_end(upload_id)
        while len(self._known) > RUNNING_HASHES:
            self._known.popitem(last=False)

    async def _finish(
        self, principal: Principal, ctx: AuditContext, upload_id: uuid.UUID, size: int, running: Any = None
    ) -> None:
        """The last byte arrived: make it one durable file, hash it and hand it to the scan pipeline under the
        same id (the quarantine transaction records the size)."""
        key = quarantine_key(principal.tenant_id, upload_id)
        try:
            await self.uploads.store.seal(key)
            # This process saw every byte in order: its running hash is the file's; otherwise read it back.
            digest = running.hexdigest() if running is not None else await self.uploads.store.sha256(key)
            await self.uploads.quarantine(
                principal.tenant_id, upload_id, size=size, sha256=digest, ctx=ctx, actor_principal=principal
            )
        except Exception:
            # Deleted while the last bytes were written or sealed (which may have made the file anew): this
            # PATCH's writes are over, so what it left is removed here, and the client hears 404.
            await self._unless_gone(principal, upload_id, key)
            raise

    async def _unless_gone(self, principal: Principal, upload_id: uuid.UUID, storage_key: str) -> Upload:
        """The upload's row, read after this request stopped writing; when it is gone, what this request stored
        for it is removed (nobody else would) and NotFound raised."""
        async with self.uploads.db.tenant(principal.tenant_id) as session:
            upload = await UploadRepository(session, principal.tenant_id).get(upload_id)
        if upload is None:
            await self.uploads.store.delete(storage_key)
            raise NotFound()
        return upload

    async def terminate(self, principal: Principal, ctx: AuditContext, upload_id: uuid.UUID) -> None:
        self._known.pop(upload_id, None)
        upload = await self._receiving(principal, upload_id)
        finished = Conflict("a finished upload is deleted with DELETE /v1/uploads/{id}")
        if upload.state != UploadState.RECEIVING.value:
            raise finished
        async with self.uploads.db.tenant(principal.tenant_id) as session:
            repo = UploadRepository(session, principal.tenant_id)
            # Compare-and-set, the row before the audit head (see UploadRepository.remove): an upload its last
            # PATCH completed meanwhile is not terminated, and one deleted meanwhile is not deleted twice.
            key = await repo.remove(upload_id, [UploadState.RECEIVING.value])
            if key is None:
                raise finished if await repo.get(upload_id) is not None else NotFound()
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
            after_commit(session, functools.partial(self.uploads.store.delete, key))


async def _keep(lock: Any) -> None:
    """Extend the lock while a long body streams in."""
    while True:
        await asyncio.sleep(LOCK_TTL / 3)
        with contextlib.suppress(LockError):
            await lock.reacquire()


def _check(hasher: Any, expected: tuple[str, bytes] | None) -> None:
    if hasher is not None and expected is not None and not hmac.compare_digest(hasher.digest(), expected[1]):
        raise ChecksumMismatch("the body does not match Upload-Checksum; it was discarded")
