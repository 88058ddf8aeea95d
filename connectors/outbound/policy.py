"""`Outbound`: the one way the gateway opens HTTP to a remote service, whatever the client library.

Every client it builds (httpx, requests, botocore, azure-core on aiohttp) keeps three promises:
- it connects only to addresses its rule permits, checked at connect time on the addresses it then uses
  (the hostname stays for TLS SNI, certificate checks and the Host header);
- it never follows a redirect: a 3xx with a Location becomes `RedirectRefused` (botocore, which never
  follows a Location itself, hands S3's region redirects to its own logic, through the same pinned pool);
- it has timeouts, and ignores the environment's proxy settings (a proxy would resolve names itself).

Tenant-chosen destinations (S3 endpoint, Azure account URL, OIDC issuer) use `for_tenants`: public
addresses only unless FILEGATE_CONNECTOR_ALLOW_PRIVATE. Operator-configured ones (Microsoft login and Graph,
the Instagram Graph API) are trusted with any address (`trusting()`), and still follow no redirect.
SDK modules are imported when a client of their kind is asked for.
"""

from __future__ import annotations

import dataclasses
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from connectors.outbound.addresses import (
    ANY_ADDRESS,
    PUBLIC,
    AddressNotAllowed,
    AddressRule,
    IPAddress,
    Resolver,
    system_resolver,
)

if TYPE_CHECKING:
    import httpx
    import requests
    from azure.core.pipeline.transport import AsyncHttpTransport
    from botocore.config import Config as BotocoreConfig

    from connectors.outbound.botocore_sender import BotocoreSender


@dataclass(frozen=True, slots=True)
class Outbound:
    rule: AddressRule = PUBLIC
    resolver: Resolver = system_resolver
    connect_timeout: float = 10.0
    read_timeout: float = 60.0

    @classmethod
    def for_tenants(cls, *, allow_private: bool) -> Outbound:
        """Where a tenant may send the gateway: public addresses, or any under ALLOW_PRIVATE."""
        return cls(rule=ANY_ADDRESS if allow_private else PUBLIC)

    def trusting(self) -> Outbound:
        """The same resolver and timeouts for an operator-configured destination: any address."""
        return dataclasses.replace(self, rule=ANY_ADDRESS)

    # --- the check ------------------------------------------------------------------------------------
    def permit(self, address: IPAddress) -> None:
        if not self.rule.permits(address):
            raise AddressNotAllowed()

    def addresses(self, host: str, port: int) -> list[IPAddress]:
        """Resolve `host` once and check every answer; a connection goes only to one of these.

        Raises `AddressNotAllowed` when any answer is not permitted, OSError when the name does not resolve.
        """
        found = self.resolver(host, port)
        if not found:
            raise socket.gaierror(socket.EAI_NONAME, "the name has no address")
        for address in found:
            self.permit(address)
        return found

    # --- clients --------------------------------------------------------------------------------------
    def httpx_transport(self, *, verify: bool | str = True) -> httpx.AsyncBaseTransport:
        from connectors.outbound.httpx_transport import PinnedTransport

        return PinnedTransport(self, verify=verify)

    def httpx_client(
        self, *, verify: bool | str = True, timeout: float | None = None, **options: Any
    ) -> httpx.AsyncClient:
        """An httpx client on `httpx_transport`; `options` go to `httpx.AsyncClient` (base_url, headers)."""
        import httpx

        total = self.read_timeout if timeout is None else timeout
        return httpx.AsyncClient(
            transport=self.httpx_transport(verify=verify),
            timeout=httpx.Timeout(total, connect=min(total, self.connect_timeout)),
            follow_redirects=False,
            trust_env=False,
            **options,
        )

    def requests_session(self, *, verify: bool | str = True) -> requests.Session:
        from connectors.outbound.requests_adapter import PinnedSession

        return PinnedSession(self, verify=verify)

    def botocore_sender(self, config: BotocoreConfig) -> BotocoreSender:
        """Sends the requests of the botocore clients it is attached to (with `config`'s timeouts)."""
        from connectors.outbound.botocore_sender import BotocoreSender

        return BotocoreSender(self, config)

    def azure_transport(self, *, verify: bool | str = True) -> AsyncHttpTransport[Any, Any]:
        from connectors.outbound.aiohttp_transport import PinnedAioHttpTransport

        return PinnedAioHttpTransport(self, verify=verify)
