"""All SQL of the audit log."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime

from sqlalchemy import Select, insert, select, update

from gateway.audit.models import AuditEvent, AuditHead
from tenants.repository import TenantRepository


class AuditRepository(TenantRepository[AuditEvent]):
    model = AuditEvent

    async def create_head(self, genesis: str) -> None:
        await self.session.execute(insert(AuditHead).values(tenant_id=self.tenant_id, seq=0, hash=genesis))

    async def advance_head(self) -> tuple[int, str]:
        """Take the next seq; the row lock holds other writers of this tenant until commit."""
        row = (
            await self.session.execute(
                update(AuditHead)
                .where(AuditHead.tenant_id == self.tenant_id)
                .values(seq=AuditHead.seq + 1)
                .returning(AuditHead.seq, AuditHead.hash)
            )
        ).one()
        return int(row[0]), str(row[1])

    async def append(self, values: dict[str, object], new_hash: str) -> None:
        await self.session.execute(insert(AuditEvent).values(tenant_id=self.tenant_id, **values))
        await self.session.execute(
            update(AuditHead).where(AuditHead.tenant_id == self.tenant_id).values(hash=new_hash)
        )

    async def head(self) -> tuple[int, str] | None:
        row = (
            await self.session.execute(
                select(AuditHead.seq, AuditHead.hash).where(AuditHead.tenant_id == self.tenant_id)
            )
        ).one_or_none()
        return (int(row[0]), str(row[1])) if row else None

    def filtered(
        self,
        *,
        action: str | None = None,
        actor: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Select[AuditEvent]:
        stmt = self.select()
        if action:
            stmt = stmt.where(AuditEvent.action == action)
        if actor:
            stmt = stmt.where(AuditEvent.actor_id == actor)
        if since:
            stmt = stmt.where(AuditEvent.at >= since)
        if until:
            stmt = stmt.where(AuditEvent.at <= until)
        return stmt

    async def newest_first(
        self, stmt: Select[AuditEvent], *, before_seq: int | None, limit: int
    ) -> Sequence[AuditEvent]:
        if before_seq is not None:
            stmt = stmt.where(AuditEvent.seq < before_seq)
        result = await self.session.execute(stmt.order_by(AuditEvent.seq.desc()).limit(limit))
        return result.scalars().all()

    async def oldest_first(
        self, stmt: Select[AuditEvent], *, batch: int = 1000
    ) -> AsyncIterator[Sequence[AuditEvent]]:
        """Batches by keyset on seq, so an export of any size holds one batch in memory."""
        after = 0
        while True:
            result = await self.session.execute(
                stmt.where(AuditEvent.seq > after).order_by(AuditEvent.seq.asc()).limit(batch)
            )
            rows = result.scalars().all()
            if not rows:
                return
            yield rows
            after = rows[-1].seq
            self.session.expunge_all()
            if len(rows) < batch:
                return
