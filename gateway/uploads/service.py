"""Uploads: streamed ingest into quarantine, listing, release of clean content, deletion.

Ingest owns its transactions: the row is `receiving` while bytes stream in, then one transaction makes it
`quarantined`, writes its outbox row and its audit event; the scan job is enqueued after that commit (and
the reconciler re-enqueues it if that enqueue is lost).
"""

from __future__ import annotations

import functools
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from connectors.base import InvalidKey
from connectors.paths import MAX_KEY_BYTES, check_relative
from gateway.audit import AuditContext, AuditRecorder, Target
from gateway.db import Database, after_commit
from gateway.errors import FilegateError, NotFound, ValidationFailed
from gateway.jobs import DELIVER_UPLOAD, SCAN_UPLOAD, JobQueue, job_id
from gateway.policy.schemas import Policy
from gateway.policy.service import PolicyService
from gateway.security.principal import Principal
from gateway.uploads import filenames
from gateway.uploads.models import RELEASED, Upload, UploadState
from gateway.uploads.quarantine import LimitExceeded, QuarantineStore, quarantine_key
from gateway.uploads.repository import OutboxRepository, UploadRepository
from gateway.uploads.schemas import UploadOut, UploadPage, Verdict
from scanning.filetype import mime_matches
from tenants.permissions import Permission, Reach
from tenants.repository import InvalidCursor

log = structlog.get_logger("filegate.uploads")


class FileTooLarge(FilegateError):
    code = "file_too_large"
    status = 413
    title = "File too large"


class TypeNotAllowed(FilegateError):
    code = "type_not_allowed"
    status = 415
    title = "File type not allowed"


class NotRetryable(FilegateError):
    code = "not_retryable"
    status = 409
    title = "Nothing to retry"


class NotClean(FilegateError):
    code = "not_clean"
    status = 409
    title = "File is not released"


# A delivery key is `<tenant_id>/<path>/<filename>`; a file name is at most filenames.MAX_BYTES, so a
# path this long always leaves room for it within the stores' key limit (a connection's base path too is
# checked when the upload names the connection: `destinations.check_destination`).
MAX_PATH_BYTES = MAX_KEY_BYTES - len(f"{uuid.UUID(int=0)}/") - 1 - filenames.MAX_BYTES


def checked_path(path: str | None) -> str | None:
    """A delivery folder inside the connection's root, refused by the same rule as every brokered key, and
    short enough that `<path>/<any stored name>` is still a key the connectors accept."""
    if path is None or path == "":
        return None
    folder = path.rstrip("/") or path
    if len(folder.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise ValidationFailed(f"path: longer than {MAX_PATH_BYTES} bytes (room is kept for the file name)")
    try:
        return check_relative(folder)
    except InvalidKey as exc:
        raise ValidationFailed(f"path: {exc.detail}") from None


def normalise_type(declared: str | None) -> str | None:
    if not declared:
        return None
    mime = declared.split(";", 1)[0].strip().lower()
    return mime[:255] if re.fullmatch(r"[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+", mime) else None


def upload_out(u: Upload) -> UploadOut:
    verdict = None
    if u.scanned_at is not None and u.scanner is not None:
        verdict = Verdict(
            scanner=u.scanner,
            signature=u.signature,
            database_version=u.database_version,
            scanned_at=u.scanned_at,
        )
    return UploadOut(
        id=u.id,
        filename=u.filename,
        original_filename=u.original_filename,
        size=u.size,
        sha256=u.sha256,
        declared_type=u.declared_type,
        detected_type=u.detected_type,
        state=u.state,
        reason=u.reason,
        verdict=verdict,
        connection_id=u.connection_id,
        path=u.path,
        owner_id=u.owner_id,
        created_at=u.created_at,
        updated_at=u.updated_at,
    )


@dataclass(frozen=True, slots=True)
class IncomingFile:
    filename: str | None
    declared_type: str | None
    content_length: int | None
    connection_id: uuid.UUID | None = None
    path: str | None = None


class UploadService:
    def __init__(
        self,
        *,
        db: Database,
        store: QuarantineStore,
        queue: JobQueue,
        audit: AuditRecorder,
        policy: PolicyService,
    ) -> None:
        self.db = db
        self.store = store
        self.queue = queue
        self.audit = audit
        self.policy = policy

    async def tenant_policy(self, tenant_id: uuid.UUID) -> Policy:
        async with self.db.tenant(tenant_id) as session:
            return await self.policy.get(session, tenant_id)

    def refuse_early(self, policy: Policy, incoming: IncomingFile) -> None:
        """Everything decidable before the first byte: size announced, type declared."""
        if incoming.content_length is not None and incoming.content_length > policy.max_file_size:
            raise FileTooLarge(f"the file is larger than this tenant's limit of {policy.max_file_size} bytes")
        declared = normalise_type(incoming.declared_type)
        if (
            declared is not None
            and declared != "application/octet-stream"
            and not mime_matches(declared, policy.allowed_types)
        ):
            raise TypeNotAllowed(f"type {declared} is not allowed by this tenant's policy")

    async def ingest(
        self,
        principal: Principal,
        ctx: AuditContext,
        incoming: IncomingFile,
        chunks: AsyncIterator[bytes],
        *,
        policy: Policy | None = None,
    ) -> UploadOut:
        policy = policy or await self.tenant_policy(principal.tenant_id)
        self.refuse_early(policy, incoming)
        path = checked_path(incoming.path)
        upload_id = uuid.uuid4()
        key = quarantine_key(principal.tenant_id, upload_id)
        async with self.db.tenant(principal.tenant_id) as session:
            await UploadRepository(session, principal.tenant_id).add(
                Upload(
                    id=upload_id,
                    owner_id=principal.user_id,
                    filename=filenames.sanitize(incoming.filename),
                    original_filename=filenames.escape_original(incoming.filename),
                    declared_type=normalise_type(incoming.declared_type),
                    state=UploadState.RECEIVING.value,
                    connection_id=incoming.connection_id,
                    path=path,
                    storage_key=key,
                )
            )
        try:
            size, digest = await self.store.write(key, chunks, limit=policy.max_file_size)
        except BaseException as exc:
            await self._abandon(principal.tenant_id, upload_id)
            if isinstance(exc, LimitExceeded):
                raise FileTooLarge(
                    f"the file is larger than this tenant's limit of {policy.max_file_size} bytes"
                ) from None
            raise
        return await self.quarantine(
            principal.tenant_id, upload_id, size=size, sha256=digest, ctx=ctx, actor_principal=principal
        )

    async def quarantine(
        self,
        tenant_id: uuid.UUID,
        upload_id: uuid.UUID,
        *,
        size: int,
        sha256: str | None,
        ctx: AuditContext,
        actor_principal: Principal,
    ) -> UploadOut:
        """All bytes are in: the upload waits in quarantine and its scan is owed (outbox, same transaction)."""
        async with self.db.tenant(tenant_id) as session:
            upload = await UploadRepository(session, tenant_id).transition(
                upload_id,
                [UploadState.RECEIVING.value],
                UploadState.QUARANTINED.value,
                size=size,
                sha256=sha256,
                expires_at=None,
            )
            if upload is None:
                raise NotFound()
            await OutboxRepository(session, tenant_id).add_job(upload_id, SCAN_UPLOAD)
            await self.audit.record(
                session,
                tenant_id,
                ctx,
                action="upload.create",
                outcome="success",
                actor=actor_principal.actor,
                target=Target("upload", str(upload_id)),
                details={"size": size, "declared_type": upload.declared_type, "sha256": sha256},
            )
            out = upload_out(upload)
        await self.enqueue_scan(tenant_id, upload_id)
        return out

    async def enqueue_scan(self, tenant_id: uuid.UUID, upload_id: uuid.UUID) -> None:
        await self.enqueue(SCAN_UPLOAD, tenant_id, upload_id)

    async def enqueue(self, name: str, tenant_id: uuid.UUID, upload_id: uuid.UUID) -> None:
        """Queue a job the outbox already owes; if this fails, the reconciler queues it later."""
        try:
            await self.queue.enqueue(name, str(tenant_id), str(upload_id), job_id=job_id(name, upload_id))
        except Exception as exc:
            log.warning("uploads.enqueue_failed", upload_id=str(upload_id), error=type(exc).__name__)

    async def _abandon(self, tenant_id: uuid.UUID, upload_id: uuid.UUID) -> None:
        async with self.db.tenant(tenant_id) as session:
            await UploadRepository(session, tenant_id).remove(upload_id)
            after_commit(session, functools.partial(self.store.delete, quarantine_key(tenant_id, upload_id)))

    # --- reading -------------------------------------------------------------------------------------
    def _owner_filter(self, principal: Principal) -> uuid.UUID | None:
        return None if principal.reach(Permission.UPLOADS_READ) is Reach.ANY else principal.user_id

    async def list(
        self,
        session: AsyncSession,
        principal: Principal,
        *,
        state: str | None,
        limit: int | None,
        cursor: str | None,
    ) -> UploadPage:
        if state is not None and state not in {s.value for s in UploadState}:
            raise ValidationFailed("unknown state")
        repo = UploadRepository(session, principal.tenant_id)
        try:
            items, next_cursor = await repo.page(
                repo.visible(self._owner_filter(principal), state), limit=limit, cursor=cursor
            )
        except InvalidCursor:
            raise ValidationFailed("cursor is malformed") from None
        return UploadPage(items=[upload_out(u) for u in items], next_cursor=next_cursor)

    async def visible(
        self, session: AsyncSession, principal: Principal, upload_id: uuid.UUID, *, shared: bool = False
    ) -> Upload:
        repo = UploadRepository(session, principal.tenant_id)
        upload = await (repo.get_shared(upload_id) if shared else repo.get(upload_id))
        # Another owner's upload is answered like a missing one.
        if upload is None or not principal.may(Permission.UPLOADS_READ, owner_id=upload.owner_id):
            raise NotFound()
        return upload

    async def get(self, session: AsyncSession, principal: Principal, upload_id: uuid.UUID) -> UploadOut:
        return upload_out(await self.visible(session, principal, upload_id))

    async def open_content(
        self, session: AsyncSession, principal: Principal, upload_id: uuid.UUID, ctx: AuditContext
    ) -> tuple[Upload, AsyncIterator[bytes]]:
        # Share-locked until this transaction commits, and the content opened before that: a delete or purge
        # committing right after cannot take the bytes from under the response (an open file stays readable).
        upload = await self.visible(session, principal, upload_id, shared=True)
        if upload.state not in RELEASED or upload.purged_at is not None:
            raise NotClean("the file is only served once it has been scanned clean")
        await self.audit.record(
            session,
            principal.tenant_id,
            ctx,
            action="upload.download",
            outcome="success",
            actor=principal.actor,
            target=Target("upload", str(upload.id)),
        )
        return upload, await _opened(self.store.read(upload.storage_key))

    async def retry_delivery(
        self, principal: Principal, upload_id: uuid.UUID, ctx: AuditContext
    ) -> UploadOut:
        """A `delivery_failed` upload is owed its delivery again (outbox row, then the job)."""
        async with self.db.tenant(principal.tenant_id) as session:
            upload = await self.visible(session, principal, upload_id)
            if not principal.may(Permission.UPLOADS_RETRY, owner_id=upload.owner_id):
                raise NotFound()
            moved = await UploadRepository(session, principal.tenant_id).transition(
                upload_id,
                [UploadState.DELIVERY_FAILED.value],
                UploadState.CLEAN.value,
                reason=None,
                delivery_attempts=0,
            )
            if moved is None:
                raise NotRetryable("only an upload whose delivery failed can be retried")
            if moved.connection_id is None:
                raise NotRetryable("the upload's connection no longer exists")
            await OutboxRepository(session, principal.tenant_id).add_job(upload_id, DELIVER_UPLOAD)
            await self.audit.record(
                session,
                principal.tenant_id,
                ctx,
                action="upload.deliver",
                outcome="success",
                actor=principal.actor,
                target=Target("upload", str(upload_id)),
                details={"op": "retry", "connection_id": str(moved.connection_id)},
            )
            out = upload_out(moved)
        await self.enqueue(DELIVER_UPLOAD, principal.tenant_id, upload_id)
        return out

    async def delete(
        self, session: AsyncSession, principal: Principal, upload_id: uuid.UUID, ctx: AuditContext
    ) -> None:
        upload = await self.visible(session, principal, upload_id)
        if not principal.may(Permission.UPLOADS_DELETE, owner_id=upload.owner_id):
            raise NotFound()
        # A compare-and-set that takes the row lock before the audit head's (the order every path keeps): a
        # second delete running alongside finds nothing and records nothing.
        key = await UploadRepository(session, principal.tenant_id).remove(upload_id)
        if key is None:
            raise NotFound()
        await self.audit.record(
            session,
            principal.tenant_id,
            ctx,
            action="upload.delete",
            outcome="success",
            actor=principal.actor,
            target=Target("upload", str(upload_id)),
        )
        after_commit(session, functools.partial(self.store.delete, key))


async def _opened(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """`chunks` with the first one already read, so the content is open now rather than when the response
    starts (after commit)."""
    try:
        first = await anext(chunks)
    except StopAsyncIteration:
        first = b""

    async def stream() -> AsyncIterator[bytes]:
        try:
            if first:
                yield first
            async for chunk in chunks:
                yield chunk
        finally:
            close = getattr(chunks, "aclose", None)
            if close is not None:
                await close()  # a response cut short closes the file now, not when collected

    return stream()
