"""azure-core on aiohttp: a connector that resolves through the outbound rule, and a transport that refuses
redirects.

aiohttp resolves names through the connector's resolver and connects to the answers, keeping the URL's
host for TLS; it skips the resolver for an IP literal, so the socket factory checks the address each socket
is about to connect to as well. azure-core's RedirectPolicy follows a 3xx that reaches it: the transport
refuses it first. The session is made on first use (aiohttp wants a running loop), like azure-core's own.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import typing

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from azure.core.pipeline.transport import AioHttpTransport

from connectors.outbound.addresses import REDIRECT_STATUSES, RedirectRefused

if typing.TYPE_CHECKING:
    from aiohappyeyeballs import AddrInfoType

    from connectors.outbound.policy import Outbound


class PinnedResolver(AbstractResolver):
    def __init__(self, outbound: Outbound) -> None:
        self._outbound = outbound

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        addresses = await asyncio.to_thread(self._outbound.addresses, host, port)
        results: list[ResolveResult] = []
        for address in addresses:
            found = socket.AF_INET6 if address.version == 6 else socket.AF_INET
            if family in (socket.AF_UNSPEC, found):
                results.append(
                    ResolveResult(
                        hostname=host,
                        host=str(address),
                        port=port,
                        family=found,
                        proto=0,
                        flags=socket.AI_NUMERICHOST,
                    )
                )
        if not results:
            raise OSError("the name has no address of the asked family")
        return results

    async def close(self) -> None:
        pass


class PinnedAioHttpTransport(AioHttpTransport):  # type: ignore[misc]
    def __init__(self, outbound: Outbound, *, verify: bool | str = True) -> None:
        super().__init__(
            use_env_settings=False,
            connection_verify=verify,
            connection_timeout=outbound.connect_timeout,
            read_timeout=outbound.read_timeout,
        )
        self._outbound = outbound
        self._made_session = False
        self.session: aiohttp.ClientSession | None

    def _socket(self, addr_info: AddrInfoType) -> socket.socket:
        family, kind, proto, _, sockaddr = addr_info
        self._outbound.permit(ipaddress.ip_address(sockaddr[0]))
        return socket.socket(family, kind, proto)

    async def open(self) -> None:
        if self.session is None and not self._made_session:
            self._made_session = True
            self.session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    resolver=PinnedResolver(self._outbound),
                    socket_factory=self._socket,
                    use_dns_cache=False,
                ),
                trust_env=False,
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
            )
        await super().open()

    async def send(self, request: typing.Any, **kwargs: typing.Any) -> typing.Any:
        response = await super().send(request, **kwargs)
        if response.status_code in REDIRECT_STATUSES and "location" in response.headers:
            response.internal_response.close()
            raise RedirectRefused(response.headers["location"])
        return response
