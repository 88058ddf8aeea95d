"""Refreshing long-lived connector tokens (Instagram) before they expire, one connection per transaction.

A token whose expiry is unknown (set by an admin) is refreshed once it is a day old (Instagram refuses to
refresh younger tokens); a known expiry is refreshed `refresh_days` before it. The new token is sealed
under the same binding as the old one; a refusal is logged and left for the next run (the admin sees it
through POST /v1/connections/{id}/test).

No transaction (nor row lock) is held while Instagram answers: the record is read, the exchange runs under
the tenant's slot and deadline, and the new token is stored only if the secrets did not change meanwhile
(compare-and-set on `secrets_updated_at`): an admin's new token, or another refresher's, wins.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy import or_, select

from connectors.base import ConnectorError, TokenRefresher
from connectors.models import Connection
from gateway.connections.service import ConnectionService, SecretsUnreadable
from gateway.db import Database, tenant_ids
from gateway.errors import FilegateError

log = structlog.get_logger("filegate.connections")
REFRESHABLE_KINDS = ("instagram",)
TOKEN_FIELD = "access_token"


async def refresh_tokens(db: Database, connections: ConnectionService, *, refresh_days: int) -> int:
    now = datetime.now(UTC)
    refreshed = 0
    for tenant_id in await tenant_ids(db):
        async with db.tenant(tenant_id) as session:
            due = (
                await session.execute(
                    select(Connection.id).where(
                        Connection.tenant_id == tenant_id,
                        Connection.kind.in_(REFRESHABLE_KINDS),
                        or_(
                            Connection.token_expires_at < now + timedelta(days=refresh_days),
                            (Connection.token_expires_at.is_(None))
                            & (Connection.secrets_updated_at < now - timedelta(days=1)),
                        ),
                    )
                )
            ).scalars()
            due_ids = list(due)
        for connection_id in due_ids:
            refreshed += await refresh_one(db, connections, tenant_id, connection_id)
    return refreshed


async def refresh_one(
    db: Database, connections: ConnectionService, tenant_id: uuid.UUID, connection_id: uuid.UUID
) -> int:
    try:
        async with connections.remote.slot(tenant_id):
            connection = await connections.fetch(tenant_id, connection_id)
            try:
                opened = await connections.opening(connection)
            except (SecretsUnreadable, ConnectorError):
                log.warning("connection.token_refresh_skipped", connection_id=str(connection_id))
                return 0
            try:
                if not isinstance(opened.connector, TokenRefresher):
                    return 0
                async with connections.remote.deadline():
                    token, expires_in = await opened.connector.refresh_token()
            finally:
                await opened.aclose()
    except (ConnectorError, FilegateError) as exc:
        log.warning("connection.token_refresh_failed", connection_id=str(connection_id), code=exc.code)
        return 0
    async with db.tenant(tenant_id) as session:
        current = (
            await session.execute(
                select(Connection)
                .where(Connection.tenant_id == tenant_id, Connection.id == connection_id)
                # NO KEY UPDATE: uploads naming this connection (which key-share lock it) need not wait.
                .with_for_update(key_share=True)
            )
        ).scalar_one_or_none()
        if current is None or current.secrets_updated_at != connection.secrets_updated_at:
            log.info("connection.token_refresh_superseded", connection_id=str(connection_id))
            return 0
        connections.replace_secret(current, TOKEN_FIELD, token)
        current.token_expires_at = datetime.now(UTC) + timedelta(seconds=expires_in)
    log.info("connection.token_refreshed", connection_id=str(connection_id), expires_in=expires_in)
    return 1
