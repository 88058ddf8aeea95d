"""Audit events as the API shows them."""

from __future__ import annotations

from typing import Any

import msgspec


class Party(msgspec.Struct):
    type: str | None
    id: str | None


class AuditEventOut(msgspec.Struct, kw_only=True):
    seq: int
    at: str
    action: str
    outcome: str
    actor: Party
    target: Party
    ip: str | None
    request_id: str | None
    details: dict[str, Any]
    hash: str
    prev_hash: str


class AuditPage(msgspec.Struct):
    items: list[AuditEventOut]
    next_cursor: str | None


class ChainHead(msgspec.Struct):
    seq: int
    hash: str


class VerifyOut(msgspec.Struct, kw_only=True):
    ok: bool
    checked: int
    head: ChainHead
    first_bad_seq: int | None
