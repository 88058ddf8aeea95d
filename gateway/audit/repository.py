"""All SQL of the audit log."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime

from sqlalchemy import Select, insert, select, text

from gateway.audit.models import AuditEvent, AuditHead
from tenants.repository import TenantRepository

_APPEND = text("""
WITH head AS (
    UPDATE audit_heads
       SET prev_hash = hash,
           seq = seq + 1,
           hash = encode(sha256(convert_to(hash || :head || hash || :middle || (seq + 1)::text || :tail, 'UTF8')),
                         'hex')
     WHERE tenant_id = :tenant_id
 RETURNING seq, prev_hash, hash
)
INSERT INTO audit_events (tenant_id, seq, at, action, outcome, actor_type, actor_id, target_type, target_id,
                          ip, request_id, details, prev_hash, hash)
SELECT :tenant_id, head.seq, :at, :action, :outcome, :actor_type, :actor_id, :target_type, :target_id,
       :ip, :request_id, CAST(:details AS jsonb), head.prev_hash, head.hash
  FROM head
RETURNING seq, hash
""")


class AuditRepository(TenantRepository[AuditEvent]):
    model = AuditEvent

    async def create_head(self, genesis: str) -> None:
        await self.session.execute(
            insert(AuditHead).values(tenant_id=self.tenant_id, seq=0, hash=genesis, prev_hash=genesis)
        )

    async def append(
        self, values: dict[str, object], canonical_parts: tuple[str, str, str]
    ) -> tuple[int, str]:
        """Advance the head and insert the event in one statement; answers (seq, hash).

        The head row stays locked until commit, which orders this tenant's writers without gaps; doing
        it in one round trip keeps that lock short.
        """
        head, middle, tail = canonical_parts
        row = (
            await self.session.execute(
                _APPEND,
                {"tenant_id": self.tenant_id, "head": head, "middle": middle, "tail": tail, **values},
            )
        ).one()
        return int(row[0]), str(row[1])

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
