"""botocore: its requests sent through a pinned urllib3 pool.

botocore takes no transport, but emits `before-send` with the prepared request and uses a response a
handler returns instead of sending it itself (a documented event). The sender answers that event with
botocore's own `URLLib3Session` (same AWS connection classes: Expect 100-continue, streaming bodies), built
with pinned pool classes and no proxy.

botocore never follows a Location; a 3xx that names the bucket's region (`x-amz-bucket-region`, as S3's
do) is left to botocore's region logic, which re-sends to the region's endpoint through this same pool.
Any other 3xx is refused: with no region to go by, botocore would ask HeadBucket for it, get the same
redirect, and ask again until the stack runs out.
"""

from __future__ import annotations

import typing

from botocore.awsrequest import AWSHTTPConnectionPool, AWSHTTPSConnectionPool, AWSPreparedRequest, AWSResponse
from botocore.config import Config
from botocore.exceptions import HTTPClientError
from botocore.httpsession import URLLib3Session

from connectors.outbound.addresses import REDIRECT_STATUSES, OutboundRefused, RedirectRefused
from connectors.outbound.urllib3_connections import pinned_pools

if typing.TYPE_CHECKING:
    from connectors.outbound.policy import Outbound


class _PinnedURLLib3Session(URLLib3Session):  # type: ignore[misc]
    def __init__(self, outbound: Outbound, config: Config) -> None:
        super().__init__(
            proxies={},
            timeout=(
                config.connect_timeout or outbound.connect_timeout,
                config.read_timeout or outbound.read_timeout,
            ),
            max_pool_connections=config.max_pool_connections,
        )
        pools = pinned_pools(outbound, {"http": AWSHTTPConnectionPool, "https": AWSHTTPSConnectionPool})
        self._pool_classes_by_scheme = pools
        self._manager.pool_classes_by_scheme = pools

    def send(self, request: AWSPreparedRequest) -> AWSResponse:
        try:
            response: AWSResponse = super().send(request)
        except HTTPClientError as exc:
            # Raised as itself: botocore would otherwise retry a refusal as a connection error.
            refused = exc.kwargs.get("error")
            if isinstance(refused, OutboundRefused):
                raise refused from None
            raise
        if response.status_code in REDIRECT_STATUSES and "x-amz-bucket-region" not in response.headers:
            response.raw.release_conn()
            raise RedirectRefused(response.headers.get("location", ""))
        return response


class BotocoreSender:
    def __init__(self, outbound: Outbound, config: Config) -> None:
        self._session = _PinnedURLLib3Session(outbound, config)

    def attach(self, client: typing.Any) -> None:
        """Send every request of this botocore client (boto3 client) through the pinned pool."""
        client.meta.events.register("before-send", self._send)

    def _send(self, request: AWSPreparedRequest, **kwargs: typing.Any) -> AWSResponse:
        return self._session.send(request)

    def close(self) -> None:
        self._session.close()
