"""httpx: an httpcore network backend that connects only to checked addresses, and a transport that
refuses redirects.

httpcore asks its network backend for a TCP stream to (host, port) and then starts TLS on it with the
hostname as server name, so resolving and checking here pins the address while SNI, the certificate check
and the Host header keep the name. httpx's `AsyncHTTPTransport` takes no backend, so the pool it built is
replaced by one with this backend (same options).
"""

from __future__ import annotations

import ssl
import typing

import anyio.to_thread
import httpcore
import httpx

from connectors.outbound.addresses import REDIRECT_STATUSES, RedirectRefused

if typing.TYPE_CHECKING:
    from connectors.outbound.policy import Outbound

MAX_CONNECTIONS = 100
MAX_KEEPALIVE = 20
KEEPALIVE_EXPIRY = 5.0


class PinnedBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, outbound: Outbound) -> None:
        self._outbound = outbound
        self._backend = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109  (httpcore's backend interface)
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await anyio.to_thread.run_sync(self._outbound.addresses, host, port)
        except OSError as exc:
            raise httpcore.ConnectError("the name does not resolve") from exc
        failure: Exception = httpcore.ConnectError("no address to connect to")
        for address in addresses:
            try:
                return await self._backend.connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109  (httpcore's backend interface)
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("outbound connections are TCP only")

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


class PinnedTransport(httpx.AsyncHTTPTransport):
    def __init__(self, outbound: Outbound, *, verify: bool | str = True) -> None:
        context = (
            ssl.create_default_context(cafile=verify)
            if isinstance(verify, str)
            else httpx.create_ssl_context(verify=verify, trust_env=False)
        )
        super().__init__(verify=context, trust_env=False, retries=0)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=context,
            max_connections=MAX_CONNECTIONS,
            max_keepalive_connections=MAX_KEEPALIVE,
            keepalive_expiry=KEEPALIVE_EXPIRY,
            network_backend=PinnedBackend(outbound),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await super().handle_async_request(request)
        if response.status_code in REDIRECT_STATUSES and "location" in response.headers:
            await response.aclose()
            raise RedirectRefused(response.headers["location"])
        return response
