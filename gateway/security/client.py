"""The client's address, believing X-Forwarded-For only from configured proxies."""

from __future__ import annotations

import ipaddress
from typing import Any

from litestar.connection import ASGIConnection

from gateway.audit import AuditContext


def client_ip(connection: ASGIConnection[Any, Any, Any, Any], trusted: tuple[str, ...]) -> str:
    peer = connection.client.host if connection.client else "unknown"
    if not trusted or not _in(peer, trusted):
        return peer
    forwarded = connection.headers.get("x-forwarded-for", "")
    # Walk from the nearest hop outwards; the first address that is not a trusted proxy is the client.
    for hop in reversed([h.strip() for h in forwarded.split(",") if h.strip()]):
        if not _in(hop, trusted):
            return hop[:64]
    return peer


def _in(address: str, networks: tuple[str, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(n, strict=False) for n in networks)


def audit_context_of_scope(scope: Any, trusted: tuple[str, ...]) -> AuditContext:
    conn: ASGIConnection[Any, Any, Any, Any] = ASGIConnection(scope)
    return AuditContext(ip=client_ip(conn, trusted), request_id=scope.get("state", {}).get("request_id"))


def audit_context(connection: ASGIConnection[Any, Any, Any, Any]) -> AuditContext:
    """The audit context of a request: its client address and request id."""
    settings = connection.app.state.settings
    return AuditContext(
        ip=client_ip(connection, settings.server.trusted_proxies),
        request_id=connection.scope.get("state", {}).get("request_id"),
    )
