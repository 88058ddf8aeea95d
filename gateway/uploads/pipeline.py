"""The scan pipeline: type check (libmagic + policy + what libmagic misses + the name's extension against
the detected type), then clamd. Fail closed.

Every state change is compare-and-set, and the verdict, its audit event and the outbox row's completion
commit together, so a job that runs twice (or two workers racing) yields one verdict and one event.
A scanner that is down or erroring keeps the file quarantined (`scanning`) and the job retries with
backoff; only after the budget is spent does the upload become `scan_failed`. Nothing here ever turns
"could not scan" into `clean`.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import structlog

from gateway.audit import Actor, AuditContext, AuditRecorder, Target
from gateway.db import Database, after_commit, tenant_ids
from gateway.jobs import DELIVER_UPLOAD, SCAN_UPLOAD, JobQueue, job_id
from gateway.policy.schemas import Policy
from gateway.policy.service import PolicyService
from gateway.settings import ScanningSettings
from gateway.uploads import filenames
from gateway.uploads.models import PENDING_SCAN, Upload, UploadState
from gateway.uploads.quarantine import QuarantineStore, local_copy
from gateway.uploads.repository import OutboxRepository, UploadRepository
from scanning.clamav import ClamdClient
from scanning.filetype import TypePolicy, check_file
from scanning.verdicts import Clean, Infected, ScanError

log = structlog.get_logger("filegate.scan")
MAX_BACKOFF = 600.0
SYSTEM = Actor("system", "scanner")


@dataclass(frozen=True, slots=True)
class Decided:
    state: str | None  # None: someone else had already decided
    deliver: bool = False  # clean, with a connection: its delivery is owed (outbox row written)


@dataclass(frozen=True, slots=True)
class RetryLater:
    defer: float
    reason: str


ScanOutcome = Decided | RetryLater


def type_policy(policy: Policy) -> TypePolicy:
    limits = policy.archive_limits
    return TypePolicy(
        allowed_types=tuple(policy.allowed_types),
        max_depth=limits.max_depth,
        max_members=limits.max_members,
        max_total_size=limits.max_total_size,
        max_ratio=limits.max_ratio,
        extension_mismatch=policy.extension_mismatch_action,
    )


class ScanPipeline:
    def __init__(
        self,
        *,
        db: Database,
        store: QuarantineStore,
        clamd: ClamdClient | None,
        audit: AuditRecorder,
        policy: PolicyService,
        settings: ScanningSettings,
        scratch_dir: Path | None = None,
    ) -> None:
        self.db = db
        self.store = store
        self.clamd = clamd
        self.audit = audit
        self.policy = policy
        self.settings = settings
        # Where an object of a remote store (S3) is copied to be scanned (see `local_copy`).
        self.scratch_dir = scratch_dir

    async def run(
        self, tenant_id: uuid.UUID, upload_id: uuid.UUID, *, request_id: str | None = None
    ) -> ScanOutcome:
        ctx = AuditContext(request_id=request_id)
        async with self.db.tenant(tenant_id) as session:
            upload = await UploadRepository(session, tenant_id).transition(
                upload_id,
                [s.value for s in PENDING_SCAN],
                UploadState.SCANNING.value,
                scan_attempts=Upload.scan_attempts + 1,
            )
            if upload is None:
                # Already decided (or deleted): the job is done, whatever Redis thought.
                await OutboxRepository(session, tenant_id).done(upload_id, SCAN_UPLOAD, datetime.now(UTC))
                return Decided(None)
            policy = await self.policy.get(session, tenant_id)
        # The scanners open a file: the local store's own, or a private copy of a remote store's object,
        # removed once the scan is over.
        verdict: Clean | Infected | ScanError | None = None
        async with local_copy(self.store, upload.storage_key, self.scratch_dir) as path:
            check = await asyncio.to_thread(
                check_file,
                path,
                declared_type=upload.declared_type,
                filename=upload.filename,
                policy=type_policy(policy),
            )
            if check.decision is None and self.clamd is not None:
                verdict = await self.clamd.scan_file(path, size_hint=upload.size)
        if check.decision is not None:
            return await self._decide(
                tenant_id,
                upload,
                policy,
                ctx,
                UploadState.REJECTED,
                check.detected_type,
                reason=check.decision.reason,
                detail=check.decision.detail,
            )
        if verdict is None:
            verdict = ScanError("scanner_unavailable", "no scanner is configured")
        # A name whose active extension the content does not bear out is released under a safe one.
        renamed_to = (
            filenames.with_extension(upload.filename, check.rename_extension)
            if check.rename_extension is not None
            else None
        )

        match verdict:
            case Clean(scanner=scanner, database_version=db_version):
                return await self._decide(
                    tenant_id,
                    upload,
                    policy,
                    ctx,
                    UploadState.CLEAN,
                    check.detected_type,
                    scanner=scanner,
                    database_version=db_version,
                    renamed_to=renamed_to,
                )
            case Infected(signature=signature, scanner=scanner, database_version=db_version):
                return await self._decide(
                    tenant_id,
                    upload,
                    policy,
                    ctx,
                    UploadState.INFECTED,
                    check.detected_type,
                    reason="infected",
                    scanner=scanner,
                    signature=signature,
                    database_version=db_version,
                    renamed_to=renamed_to,
                )
            case ScanError(reason=reason, detail=detail, retryable=True):
                if upload.scan_attempts < self.settings.max_tries:
                    defer = min(self.settings.retry_base * 2 ** (upload.scan_attempts - 1), MAX_BACKOFF)
                    log.warning(
                        "scan.retry",
                        upload_id=str(upload_id),
                        reason=reason,
                        attempt=upload.scan_attempts,
                        defer_s=defer,
                    )
                    return RetryLater(defer=defer, reason=reason)
                return await self._decide(
                    tenant_id,
                    upload,
                    policy,
                    ctx,
                    UploadState.SCAN_FAILED,
                    check.detected_type,
                    reason=reason,
                    detail=detail,
                    renamed_to=renamed_to,
                )
            case ScanError(reason=reason, detail=detail):
                # clamd could not fully scan it (over its limits, encrypted, ...): the tenant decides which
                # failure it is, never clean.
                state = UploadState(policy.unscannable_action)
                return await self._decide(
                    tenant_id,
                    upload,
                    policy,
                    ctx,
                    state,
                    check.detected_type,
                    reason=reason,
                    detail=detail,
                    renamed_to=renamed_to,
                )
        raise AssertionError("unreachable")  # pragma: no cover

    async def _decide(
        self,
        tenant_id: uuid.UUID,
        upload: Upload,
        policy: Policy,
        ctx: AuditContext,
        state: UploadState,
        detected_type: str | None,
        *,
        reason: str | None = None,
        detail: str | None = None,
        scanner: str | None = None,
        signature: str | None = None,
        database_version: str | None = None,
        renamed_to: str | None = None,
    ) -> Decided:
        now = datetime.now(UTC)
        # Content that will never be released goes with its verdict (the row and its verdict stay).
        purge = state is UploadState.INFECTED and policy.infected_action == "delete"
        renamed = {"filename": renamed_to} if renamed_to is not None else {}
        async with self.db.tenant(tenant_id) as session:
            decided = await UploadRepository(session, tenant_id).transition(
                upload.id,
                [UploadState.SCANNING.value],
                state.value,
                reason=reason,
                detected_type=detected_type,
                scanner=scanner or "filegate",
                signature=signature,
                database_version=database_version,
                scanned_at=now,
                **({"purged_at": now} if purge else {}),
                **renamed,
            )
            if decided is None:
                return Decided(None)
            if purge:
                after_commit(session, functools.partial(self.store.delete, upload.storage_key))
            outbox = OutboxRepository(session, tenant_id)
            await outbox.done(upload.id, SCAN_UPLOAD, now)
            deliver = state is UploadState.CLEAN and upload.connection_id is not None
            if deliver:
                await outbox.add_job(upload.id, DELIVER_UPLOAD)
            await self.audit.record(
                session,
                tenant_id,
                ctx,
                action="upload.verdict",
                outcome="success" if state is UploadState.CLEAN else "denied",
                actor=SYSTEM,
                target=Target("upload", str(upload.id)),
                details={
                    "state": state.value,
                    "reason": reason,
                    "signature": signature,
                    "detected_type": detected_type,
                    "detail": (detail or "")[:200] or None,
                    **({"renamed_to": renamed_to} if renamed_to is not None else {}),
                },
            )
        log.info(
            "upload.verdict", upload_id=str(upload.id), state=state.value, reason=reason, signature=signature
        )
        return Decided(state.value, deliver=deliver)


async def reconcile(db: Database, queue: JobQueue, *, grace: float) -> int:
    """Re-enqueue every job (scan, delivery) the database says is owed and that has waited longer than `grace`.

    The job id makes this idempotent: arq refuses a second job while one is queued or running, so only
    jobs that were lost (Redis flushed, enqueue failed) are queued again.
    """
    queued = 0
    older_than = datetime.now(UTC) - timedelta(seconds=grace)
    for tenant_id in await tenant_ids(db):
        async with db.tenant(tenant_id) as session:
            pending = await OutboxRepository(session, tenant_id).pending(older_than)
        for job in pending:
            if await queue.enqueue(
                job.job, str(tenant_id), str(job.upload_id), job_id=job_id(job.job, job.upload_id)
            ):
                queued += 1
    if queued:
        log.warning("reconciler.requeued", count=queued)
    return queued


async def retention(db: Database, store: QuarantineStore, policy_service: PolicyService) -> int:
    """Purge infected/rejected/failed content after the tenant's retention; drop expired unfinished uploads."""
    purged = 0
    now = datetime.now(UTC)
    for tenant_id in await tenant_ids(db):
        async with db.tenant(tenant_id) as session:
            repo = UploadRepository(session, tenant_id)
            policy = await policy_service.get(session, tenant_id)
            before = now - timedelta(days=policy.retention_days)
            # The rows change first; their bytes go once that committed (a rollback keeps both).
            keys = [
                *await repo.mark_purged(
                    [UploadState.INFECTED.value, UploadState.REJECTED.value, UploadState.SCAN_FAILED.value],
                    before,
                    now,
                ),
                *await repo.remove_expired(now),
            ]
            for key in keys:
                after_commit(session, functools.partial(store.delete, key))
            purged += len(keys)
    return purged
