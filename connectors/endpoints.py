"""Where a tenant may point a connector: no private, loopback or link-local addresses unless allowed.

A tenant admin chooses `endpoint_url` (S3-compatible) and `account_url` (Azure); without this check that
would be a way to make the gateway call its own network (cloud metadata at 169.254.169.254, the database,
Redis). This is the early check, at configuration time, for a clear answer to the admin; it is not what
keeps the gateway out of its own network: a name can resolve differently a second later, so every
connection checks again the addresses it connects to (`connectors.outbound`). `allow_private` is for
development and tests (FILEGATE_CONNECTOR_ALLOW_PRIVATE).
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

from connectors.base import Rejected
from connectors.outbound import AddressNotAllowed, Outbound

RESOLVE_TIMEOUT = 5.0


def check_endpoint(url: str, *, allow_private: bool) -> None:
    """The check, resolving the host here: for code already off the event loop (a connector being built)."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise Rejected("the endpoint must be an http(s) URL with a host")
    if parts.username or parts.password:
        raise Rejected("the endpoint must not carry credentials")
    if allow_private:
        return
    if parts.scheme != "https":
        raise Rejected("the endpoint must use https")
    try:
        Outbound.for_tenants(allow_private=False).addresses(parts.hostname, parts.port or 443)
    except AddressNotAllowed:
        raise Rejected("the endpoint resolves to a private or reserved address") from None
    except (OSError, UnicodeError, ValueError):
        raise Rejected("the endpoint's host does not resolve") from None


async def check_endpoint_soon(url: str, *, allow_private: bool) -> None:
    """The same check from the event loop: the host is resolved in a thread and given RESOLVE_TIMEOUT seconds.

    A tenant chooses the host, and so the DNS server that answers for it: one that answers slowly must
    not hold the event loop (every request of the process) while it thinks it over."""
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT):
            await asyncio.to_thread(check_endpoint, url, allow_private=allow_private)
    except TimeoutError:
        raise Rejected("the endpoint's host does not resolve in time") from None
