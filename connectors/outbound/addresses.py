"""Which addresses an outbound connection may reach, how a name becomes addresses, and the two refusals.

A rule is checked on every address a name resolves to, at the moment a connection is made, and the
connection then goes to one of exactly those addresses: nothing resolves the name a second time between the
check and the connect, so a DNS answer that changes (rebinding) cannot slip an internal address past it.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from connectors.base import Rejected

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[IPAddress]]
"""A name (or an IP literal) and a port → the addresses to connect to. Blocking; raises OSError."""

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class AddressRule(Protocol):
    def permits(self, address: IPAddress) -> bool: ...


def is_public(address: IPAddress) -> bool:
    """A global unicast address, also when an IPv6 address only wraps an IPv4 one that is not."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None and not is_public(embedded):
            return False
    return address.is_global and not address.is_multicast


@dataclass(frozen=True, slots=True)
class PublicAddresses:
    """Tenant-chosen destinations: never the gateway's own network, loopback, link-local (cloud metadata)."""

    def permits(self, address: IPAddress) -> bool:
        return is_public(address)


@dataclass(frozen=True, slots=True)
class AnyAddress:
    """Operator-configured destinations, and every destination under FILEGATE_CONNECTOR_ALLOW_PRIVATE."""

    def permits(self, address: IPAddress) -> bool:
        return True


PUBLIC = PublicAddresses()
ANY_ADDRESS = AnyAddress()


def system_resolver(host: str, port: int) -> list[IPAddress]:
    """The system's resolver (getaddrinfo), each address once, in its order."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    found: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if address not in found:
            found.append(address)
    return found


class OutboundRefused(Rejected):
    """The gateway refused to go where a remote answer or a name pointed it (never retried)."""


class AddressNotAllowed(OutboundRefused):
    def __init__(self) -> None:
        super().__init__("the destination resolves to an address that is not allowed (private or reserved)")


class RedirectRefused(OutboundRefused):
    def __init__(self, location: str) -> None:
        super().__init__("the destination answered with a redirect, which is not followed")
        self.location = location  # not in the detail: a redirect can carry a signed URL
