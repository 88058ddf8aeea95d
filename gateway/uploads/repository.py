"""All SQL of uploads and the outbox."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select, update

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
            found = await self.session.execute(
                select(Connection).where(
                    Connection.tenant_id == self.tenant_id, Connection.id == obj.connection_id
                )
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

    async def expired_receiving(self, now: datetime, limit: int = 500) -> Sequence[Upload]:
        result = await self.session.execute(
            self.select()
            .where(
                Upload.state == UploadState.RECEIVING.value,
                Upload.expires_at.is_not(None),
                Upload.expires_at < now,
            )
            .limit(limit)
        )
        return result.scalars().all()

    async def purgeable(self, states: Sequence[str], before: datetime, limit: int = 500) -> Sequence[Upload]:
        result = await self.session.execute(
            self.select()
            .where(Upload.state.in_(list(states)), Upload.purged_at.is_(None), Upload.updated_at < before)
            .limit(limit)
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
