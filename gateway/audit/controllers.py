"""HTTP routes of the audit log (Admin only)."""

from __future__ import annotations

from datetime import datetime

import msgspec
from litestar import Controller, get
from litestar.params import Parameter
from litestar.response import Stream
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.audit.repository import AuditRepository
from gateway.audit.schemas import AuditEventOut, AuditPage, ChainHead, VerifyOut
from gateway.audit.service import AuditRecorder, event_dict
from gateway.errors import ValidationFailed
from gateway.security.guards import requires_any
from gateway.security.principal import Principal
from tenants.inputs import InvalidInput, instant
from tenants.permissions import Permission
from tenants.repository import InvalidCursor, clamp_limit, decode_cursor, encode_cursor

Action = Parameter(max_length=64, required=False)
ActorId = Parameter(max_length=64, required=False)


def _aware(value: datetime | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        return instant(value, name)
    except InvalidInput as exc:
        raise ValidationFailed(str(exc)) from None


class AuditController(Controller):
    path = "/v1/audit"
    tags = ["audit"]
    guards = [requires_any(Permission.AUDIT_READ)]

    @get("/")
    async def list_events(
        self,
        principal: Principal,
        session: AsyncSession,
        action: str | None = Action,
        actor: str | None = ActorId,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = Parameter(ge=1, required=False),
        cursor: str | None = None,
    ) -> AuditPage:
        repo = AuditRepository(session, principal.tenant_id)
        n = clamp_limit(limit)
        before = None
        if cursor:
            try:
                (before,) = decode_cursor(cursor, int)
            except InvalidCursor:
                raise ValidationFailed("cursor is malformed") from None
        stmt = repo.filtered(
            action=action, actor=actor, since=_aware(since, "since"), until=_aware(until, "until")
        )
        rows = list(await repo.newest_first(stmt, before_seq=before, limit=n + 1))
        next_cursor = encode_cursor(rows[n - 1].seq) if len(rows) > n else None
        items = [msgspec.convert(event_dict(r), AuditEventOut) for r in rows[:n]]
        return AuditPage(items=items, next_cursor=next_cursor)

    @get("/export", media_type="application/x-ndjson")
    async def export(
        self,
        principal: Principal,
        audit: AuditRecorder,
        action: str | None = Action,
        actor: str | None = ActorId,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Stream:
        stream = audit.export(
            principal.tenant_id,
            action=action,
            actor=actor,
            since=_aware(since, "since"),
            until=_aware(until, "until"),
        )
        return Stream(stream, media_type="application/x-ndjson")

    @get("/verify")
    async def verify(self, principal: Principal, audit: AuditRecorder) -> VerifyOut:
        result = await audit.verify(principal.tenant_id)
        return VerifyOut(
            ok=result.ok,
            checked=result.checked,
            head=ChainHead(seq=result.head_seq, hash=result.head_hash),
            first_bad_seq=result.first_bad_seq,
        )
