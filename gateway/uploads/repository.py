"""All SQL of uploads and the outbox."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select, delete, select, update

from connectors.models import Connection
from gateway.errors import FilegateError
from gateway.uploads.destinations import check_destination
from gateway.uploads.models import OutboxJob, Upload, UploadState
from tenants.repository import TenantRepository


class UnknownConnection(FilegateError):
    code = "unknown_connection"
    status = 422
    title = "No such connection"


class UploadRepository(TenantRepository[Upload]):
    model = Upload

    async def add(self, obj: Upload) -> Upload:
        """Insert an upload; its `connection_id`, if any, must name a connection of this tenant that will
        take the upload's delivery key."""
        if obj.connection_id is not None:
            # Key-share locked until commit: a delete of the connection either committed before (refused
            # here) or waits for this insert (and then sets its connection_id to NULL), never a 500 between.
            found = await self.session.execute(
                select(Connection)
                .where(Connection.tenant_id == self.tenant_id, Connection.id == obj.connection_id)
                .with_for_update(read=True, key_share=True)
            )
            connection = found.scalar_one_or_none()
            if connection is None:
                raise UnknownConnection("connection_id does not name a connection of this tenant")
            check_destination(self.tenant_id, connection, obj.path, obj.filename)
        return await super().add(obj)

    def visible(self, owner_id: uuid.UUID | None, state: str | None = None) -> Select[Upload]:
        """Uploads a principal may see: all of the tenant's, or only `owner_id`'s."""
        stmt = self.select()
        if owner_id is not None:
            stmt = stmt.where(Upload.owner_id == owner_id)
        if state is not None:
            stmt = stmt.where(Upload.state == state)
        return stmt

    async def transition(
        self, upload_id: uuid.UUID, expected: Sequence[str], new: str, **values: Any
    ) -> Upload | None:
        """Compare-and-set: move to `new` only from one of `expected`; None when another actor moved it first."""
        result = await self.session.execute(
            update(Upload)
            .where(
                Upload.tenant_id == self.tenant_id, Upload.id == upload_id, Upload.state.in_(list(expected))
            )
            .values(state=new, **values)
            .returning(Upload)
        )
        return result.scalar_one_or_none()

    async def get_shared(self, upload_id: uuid.UUID) -> Upload | None:
        """The upload, its row share-locked until commit: no delete or purge can take it (or its bytes) away
        meanwhile, while a reader still may."""
        result = await self.session.execute(
            self.select().where(Upload.id == upload_id).with_for_update(read=True)
        )
        return result.scalar_one_or_none()

    async def remove(self, upload_id: uuid.UUID, states: Sequence[str] | None = None) -> str | None:
        """Compare-and-set delete (from one of `states`, or any): the storage key of the row it removed, None
        when another actor deleted or moved it first. It locks the row before anything else is written, as
        every path that also appends to the audit chain must (row, then the tenant's audit head)."""
        stmt = delete(Upload).where(Upload.tenant_id == self.tenant_id, Upload.id == upload_id)
        if states is not None:
            stmt = stmt.where(Upload.state.in_(list(states)))
        result = await self.session.execute(stmt.returning(Upload.storage_key))
        return result.scalar_one_or_none()

    async def remove_expired(self, now: datetime, limit: int = 500) -> Sequence[str]:
        """Delete unfinished uploads whose expiry passed, re-checked as each row is deleted (a PATCH that just
        extended one keeps it); answers their storage keys."""
        expired = (
            select(Upload.id)
            .where(
                Upload.tenant_id == self.tenant_id,
                Upload.state == UploadState.RECEIVING.value,
                Upload.expires_at < now,
            )
            .limit(limit)
        )
        result = await self.session.execute(
            delete(Upload)
            .where(
                Upload.tenant_id == self.tenant_id,
                Upload.id.in_(expired),
                Upload.state == UploadState.RECEIVING.value,
                Upload.expires_at < now,
            )
            .returning(Upload.storage_key)
        )
        return result.scalars().all()

    async def mark_purged(
        self, states: Sequence[str], before: datetime, now: datetime, limit: int = 500
    ) -> Sequence[str]:
        """Mark the content of uploads in `states`, untouched since `before`, as purged (compare-and-set: a row
        deleted or moved meanwhile is skipped); answers their storage keys, whose bytes go after commit."""
        stale = (
            select(Upload.id)
            .where(
                Upload.tenant_id == self.tenant_id,
                Upload.state.in_(list(states)),
                Upload.purged_at.is_(None),
                Upload.updated_at < before,
            )
            .limit(limit)
        )
        result = await self.session.execute(
            update(Upload)
            .where(
                Upload.tenant_id == self.tenant_id,
                Upload.id.in_(stale),
                Upload.state.in_(list(states)),
                Upload.purged_at.is_(None),
            )
            .values(purged_at=now)
            .returning(Upload.storage_key)
        )
        return result.scalars().all()


class OutboxRepository(TenantRepository[OutboxJob]):
    model = OutboxJob

    async def add_job(self, upload_id: uuid.UUID, job: str) -> None:
        await self.add(OutboxJob(upload_id=upload_id, job=job))

    async def done(self, upload_id: uuid.UUID, job: str, at: datetime) -> None:
        await self.session.execute(
            update(OutboxJob)
            .where(
                OutboxJob.tenant_id == self.tenant_id,
                OutboxJob.upload_id == upload_id,
                OutboxJob.job == job,
                OutboxJob.done_at.is_(None),
            )
            .values(done_at=at)
        )

    async def pending(self, older_than: datetime, limit: int = 1000) -> Sequence[OutboxJob]:
        result = await self.session.execute(
            select(OutboxJob)
            .where(
                OutboxJob.tenant_id == self.tenant_id,
                OutboxJob.done_at.is_(None),
                OutboxJob.created_at < older_than,
            )
            .order_by(OutboxJob.created_at)
            .limit(limit)
        )
        return result.scalars().all()
