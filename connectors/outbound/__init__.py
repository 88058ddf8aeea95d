"""Outbound HTTP under one address rule, without redirects (see `connectors.outbound.policy`)."""

from connectors.outbound.addresses import (
    ANY_ADDRESS,
    PUBLIC,
    AddressNotAllowed,
    AddressRule,
    IPAddress,
    OutboundRefused,
    RedirectRefused,
    Resolver,
    is_public,
    system_resolver,
)
from connectors.outbound.policy import Outbound

__all__ = [
    "ANY_ADDRESS",
    "PUBLIC",
    "AddressNotAllowed",
    "AddressRule",
    "IPAddress",
    "Outbound",
    "OutboundRefused",
    "RedirectRefused",
    "Resolver",
    "is_public",
    "system_resolver",
]
