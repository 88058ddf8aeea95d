"""urllib3 connection pools whose connections resolve through the outbound rule (requests and botocore
both send through urllib3).

urllib3 opens a connection's socket in `HTTPConnection._new_conn`, from the connection's host, and later
wraps it in TLS with that same host as server name; resolving and checking there pins the address while the
name stays for SNI, the certificate and the Host header. The pool classes are made per `Outbound` (a pool
manager builds pools from its classes and keys only, so the rule travels as a class attribute).
"""

from __future__ import annotations

import socket
import typing

from urllib3.connection import HTTPConnection
from urllib3.connectionpool import HTTPConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util import connection

if typing.TYPE_CHECKING:
    from connectors.outbound.policy import Outbound


class PinnedConnection(HTTPConnection):
    """Mixed in before a urllib3 connection class (plain, TLS, or botocore's AWS ones)."""

    outbound: typing.ClassVar[Outbound]

    def _new_conn(self) -> socket.socket:
        try:
            addresses = self.outbound.addresses(self.host, self.port)
        except socket.gaierror as exc:
            raise NameResolutionError(self.host, self, exc) from exc
        failure: OSError = OSError("no address to connect to")
        for address in addresses:
            try:
                return connection.create_connection(
                    (str(address), self.port),
                    self.timeout,
                    source_address=self.source_address,
                    socket_options=self.socket_options,
                )
            except OSError as exc:
                failure = exc
        if isinstance(failure, TimeoutError):
            raise ConnectTimeoutError(
                self, f"Connection to {self.host} timed out. (connect timeout={self.timeout})"
            ) from failure
        raise NewConnectionError(self, f"Failed to establish a new connection: {failure}") from failure


def pinned_pools(
    outbound: Outbound, pools: dict[str, type[HTTPConnectionPool]]
) -> dict[str, type[HTTPConnectionPool]]:
    """`pools` (scheme → pool class) with connections that go only where `outbound` permits."""
    pinned: dict[str, type[HTTPConnectionPool]] = {}
    for scheme, pool in pools.items():
        base = pool.ConnectionCls
        conn = type(f"Pinned{base.__name__}", (PinnedConnection, base), {"outbound": outbound})
        pinned[scheme] = type(f"Pinned{pool.__name__}", (pool,), {"ConnectionCls": conn})
    return pinned
