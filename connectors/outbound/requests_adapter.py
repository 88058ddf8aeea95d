"""requests: a session whose adapter connects only to checked addresses and refuses redirects.

The refusal sits in the adapter (the transport), under `Session.send`, so no caller can turn redirect
following back on with `allow_redirects`. The environment is not consulted (`trust_env` off): no proxy,
no netrc, no REQUESTS_CA_BUNDLE overriding the `verify` this session was given.
"""

from __future__ import annotations

import typing

import requests
from requests.adapters import HTTPAdapter
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from connectors.outbound.addresses import OutboundRefused, RedirectRefused
from connectors.outbound.urllib3_connections import pinned_pools

if typing.TYPE_CHECKING:
    from connectors.outbound.policy import Outbound


class PinnedAdapter(HTTPAdapter):
    def __init__(self, outbound: Outbound) -> None:
        self._pools = pinned_pools(outbound, {"http": HTTPConnectionPool, "https": HTTPSConnectionPool})
        self._timeout = (outbound.connect_timeout, outbound.read_timeout)
        super().__init__(max_retries=0)

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: typing.Any
    ) -> None:
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        self.poolmanager.pool_classes_by_scheme = self._pools

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: typing.Any) -> typing.Any:
        # A proxy resolves and connects on its own: the address rule could not hold there.
        raise OutboundRefused("outbound connections do not go through a proxy")

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float | None, float | None] | None = None,
        verify: bool | str = True,
        cert: str | tuple[str, str] | None = None,
        proxies: dict[str, str] | None = None,
    ) -> requests.Response:
        response = super().send(
            request,
            stream=stream,
            timeout=self._timeout if timeout is None else timeout,
            verify=verify,
            cert=cert,
            proxies=proxies,
        )
        if response.is_redirect:
            location = response.headers["location"]
            response.close()
            raise RedirectRefused(location)
        return response


class PinnedSession(requests.Session):
    def __init__(self, outbound: Outbound, *, verify: bool | str = True) -> None:
        super().__init__()
        self.trust_env = False
        self.verify = verify
        adapter = PinnedAdapter(outbound)
        self.mount("https://", adapter)
        self.mount("http://", adapter)
