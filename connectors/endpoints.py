"""Where a tenant may point a connector: no private, loopback or link-local addresses unless allowed.

A tenant admin chooses `endpoint_url` (S3-compatible) and `account_url` (Azure); without this check that
would be a way to make the gateway call its own network (cloud metadata at 169.254.169.254, the database,
Redis). The host is resolved at the time of the check; `allow_private` is for development and tests
(FILEGATE_CONNECTOR_ALLOW_PRIVATE).
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from connectors.base import Rejected


def check_endpoint(url: str, *, allow_private: bool) -> None:
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
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        raise Rejected("the endpoint's host does not resolve") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            raise Rejected("the endpoint resolves to a private or reserved address")
