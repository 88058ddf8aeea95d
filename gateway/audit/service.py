"""Recording, reading and verifying audit events.

`AuditRecorder.record` writes in the caller's transaction, so an act and its event commit or roll back
together. Failures and denials, whose act does not commit, are written with `record_alone` in a
transaction of their own.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec
import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.audit import chain
from gateway.audit.models import AuditEvent
from gateway.audit.repository import AuditRepository
from gateway.db import Database

log = structlog.get_logger("filegate.audit")

Outcome = Literal["success", "failure", "denied"]


@dataclass(frozen=True, slots=True)
class Actor:
    type: Literal["user", "api_key", "operator", "system", "anonymous"]
    id: str | None = None


@dataclass(frozen=True, slots=True)
class Target:
    type: str | None = None
    id: str | None = None


@dataclass(frozen=True, slots=True)
class AuditContext:
    """Where an act came from: carried from the request (or job) into every event it causes."""

    ip: str | None = None
    request_id: str | None = None


@dataclass(slots=True)
class VerifyResult:
    ok: bool
    checked: int
    head_seq: int
    head_hash: str
    first_bad_seq: int | None = None


@dataclass(slots=True)
class _Pending:
    action: str
    outcome: Outcome
    actor: Actor
    target: Target
    details: dict[str, Any] = field(default_factory=dict)


def event_dict(row: AuditEvent) -> dict[str, Any]:
    """The event as exported and as hashed (with `hash`; `chain.canonical` drops it)."""
    return {
        "seq": row.seq,
        "at": chain.format_at(row.at),
        "action": row.action,
        "outcome": row.outcome,
        "actor": {"type": row.actor_type, "id": row.actor_id},
        "target": {"type": row.target_type, "id": row.target_id},
        "ip": row.ip,
        "request_id": row.request_id,
        "details": row.details,
        "prev_hash": row.prev_hash,
        "hash": row.hash,
    }


class AuditRecorder:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def start_chain(self, session: AsyncSession, tenant_id: uuid.UUID) -> None:
        await AuditRepository(session, tenant_id).create_head(chain.GENESIS)

    async def record(
        self,
        session: AsyncSession,
        tenant_id: uuid.UUID,
        ctx: AuditContext,
        *,
        action: str,
        outcome: Outcome,
        actor: Actor,
        target: Target | None = None,
        details: dict[str, Any] | None = None,
    ) -> int:
        """Append one event in the caller's transaction; returns its seq."""
        at = datetime.now(UTC)
        tgt = target or Target()
        details_json = msgspec.json.encode(details or {})
        # The hashed form is what JSONB hands back when the chain is verified: decode(encode(...)).
        event = {
            "at": chain.format_at(at),
            "action": action,
            "outcome": outcome,
            "actor": {"type": actor.type, "id": actor.id},
            "target": {"type": tgt.type, "id": tgt.id},
            "ip": ctx.ip,
            "request_id": ctx.request_id,
            "details": msgspec.json.decode(details_json),
        }
        seq, _ = await AuditRepository(session, tenant_id).append(
            {
                "at": at,
                "action": action,
                "outcome": outcome,
                "actor_type": actor.type,
                "actor_id": actor.id,
                "target_type": tgt.type,
                "target_id": tgt.id,
                "ip": ctx.ip,
                "request_id": ctx.request_id,
                "details": details_json.decode(),
            },
            chain.split_canonical(event),
        )
        log.info("audit.event", tenant_id=str(tenant_id), seq=seq, action=action, outcome=outcome)
        return seq

    async def record_alone(self, tenant_id: uuid.UUID, ctx: AuditContext, **event: Any) -> None:
        """Record in a transaction of its own: for failures and denials, whose request rolls back."""
        async with self._db.tenant(tenant_id) as session:
            await self.record(session, tenant_id, ctx, **event)

    # --- reading ------------------------------------------------------------------------------------
    async def export(self, tenant_id: uuid.UUID, **filters: Any) -> AsyncIterator[bytes]:
        """NDJSON lines, oldest first, one database batch in memory at a time."""
        async with self._db.tenant(tenant_id) as session:
            repo = AuditRepository(session, tenant_id)
            async for rows in repo.oldest_first(repo.filtered(**filters)):
                yield b"".join(msgspec.json.encode(event_dict(r)) + b"\n" for r in rows)

    async def verify(self, tenant_id: uuid.UUID) -> VerifyResult:
        async with self._db.tenant(tenant_id) as session:
            repo = AuditRepository(session, tenant_id)
            head = await repo.head()
            head_seq, head_hash = head if head else (0, chain.GENESIS)
            expected_seq, prev_hash, checked = 1, chain.GENESIS, 0
            async for rows in repo.oldest_first(repo.select()):
                for row in rows:
                    event = event_dict(row)
                    if (
                        row.seq != expected_seq
                        or row.prev_hash != prev_hash
                        or chain.link(prev_hash, event) != row.hash
                    ):
                        return VerifyResult(False, checked, head_seq, head_hash, first_bad_seq=expected_seq)
                    checked += 1
                    prev_hash = row.hash
                    expected_seq += 1
            # Rows deleted from the end leave the head ahead of the last row.
            if checked != head_seq or prev_hash != head_hash:
                return VerifyResult(False, checked, head_seq, head_hash, first_bad_seq=expected_seq)
            return VerifyResult(True, checked, head_seq, head_hash)
