"""Refreshing long-lived connector tokens (Instagram) before they expire, one connection per transaction.

A token whose expiry is unknown (set by an admin) is refreshed once it is a day old (Instagram refuses to
refresh younger tokens); a known expiry is refreshed `refresh_days` before it. The new token is sealed
under the same binding as the old one; a refusal is logged and left for the next run (the admin sees it
through POST /v1/connections/{id}/test).
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
    async with db.tenant(tenant_id) as session:
        connection = (
            await session.execute(
                select(Connection)
                .where(Connection.tenant_id == tenant_id, Connection.id == connection_id)
                # NO KEY UPDATE: uploads naming this connection (which key-share lock it) need not wait for
                # the provider's answer.
                .with_for_update(skip_locked=True, key_share=True)
            )
        ).scalar_one_or_none()
        if connection is None:
            return 0
        try:
            opened = connections.open(connection)
        except (SecretsUnreadable, ConnectorError):
            log.warning("connection.token_refresh_skipped", connection_id=str(connection_id))
            return 0
        try:
            if not isinstance(opened.connector, TokenRefresher):
                return 0
            token, expires_in = await opened.connector.refresh_token()
        except ConnectorError as exc:
            log.warning("connection.token_refresh_failed", connection_id=str(connection_id), code=exc.code)
            return 0
        finally:
            await opened.aclose()
        connections.replace_secret(connection, TOKEN_FIELD, token)
        connection.token_expires_at = datetime.now(UTC) + timedelta(seconds=expires_in)
        log.info("connection.token_refreshed", connection_id=str(connection_id), expires_in=expires_in)
        return 1
