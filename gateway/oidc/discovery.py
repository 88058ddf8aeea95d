"""Provider metadata (OpenID discovery) and JWKS, fetched over httpx and cached for a few minutes.

The issuer is chosen by a tenant admin, so fetching it must not become a way into the gateway's own
network: the same endpoint rule as connectors applies (https, public addresses; private only when the
operator allows it), checked on each URL first for a clear answer and then again, by
`connectors.outbound`, on the addresses each connection actually uses (a name may resolve differently a
second later); no redirect is followed. The token exchange uses a `transport()` under the same rule.
The discovery document's `issuer` must equal the configured one exactly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx
from joserfc.jwk import KeySet

from connectors.base import ConnectorError
from connectors.endpoints import check_endpoint_soon
from connectors.outbound import Outbound

CACHE_SECONDS = 600
MAX_DOCUMENT = 512 * 1024


class DiscoveryError(Exception):
    """The provider's metadata or keys could not be fetched or are not acceptable (safe message)."""


@dataclass(frozen=True, slots=True)
class ProviderMetadata:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str


class Discovery:
    def __init__(
        self,
        *,
        allow_private: bool,
        timeout: float = 10.0,
        verify: bool | str = True,
        outbound: Outbound | None = None,
    ) -> None:
        self._allow_private = allow_private
        self._timeout = timeout
        self._verify = verify
        self._outbound = outbound or Outbound.for_tenants(allow_private=allow_private)
        self._metadata: dict[str, tuple[float, ProviderMetadata]] = {}
        self._keys: dict[str, tuple[float, KeySet]] = {}

    async def _check(self, url: str) -> None:
        try:
            await check_endpoint_soon(url, allow_private=self._allow_private)
        except ConnectorError as exc:
            raise DiscoveryError(f"the provider's address is not allowed: {exc.detail}") from None

    async def _get_json(self, url: str) -> dict[str, Any]:
        await self._check(url)
        try:
            async with self._outbound.httpx_client(verify=self._verify, timeout=self._timeout) as c:
                r = await c.get(url, headers={"Accept": "application/json"})
        except httpx.HTTPError:
            raise DiscoveryError("the provider could not be reached") from None
        except ConnectorError as exc:  # an address not allowed, a redirect
            raise DiscoveryError(f"the provider could not be used: {exc.detail}") from None
        if r.status_code != 200 or len(r.content) > MAX_DOCUMENT:
            raise DiscoveryError(f"the provider answered {r.status_code}")
        try:
            data = r.json()
        except ValueError:
            raise DiscoveryError("the provider's answer is not JSON") from None
        if not isinstance(data, dict):
            raise DiscoveryError("the provider's answer is not a JSON object")
        return data

    def transport(self) -> httpx.AsyncBaseTransport:
        """For the provider's other endpoints (the token exchange): the same address rule, no redirects."""
        return self._outbound.httpx_transport(verify=self._verify)

    async def metadata(self, issuer: str) -> ProviderMetadata:
        cached = self._metadata.get(issuer)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        doc = await self._get_json(issuer.rstrip("/") + "/.well-known/openid-configuration")
        if doc.get("issuer") != issuer:
            raise DiscoveryError("the discovery document names another issuer")
        try:
            meta = ProviderMetadata(
                issuer=issuer,
                authorization_endpoint=str(doc["authorization_endpoint"]),
                token_endpoint=str(doc["token_endpoint"]),
                jwks_uri=str(doc["jwks_uri"]),
            )
        except KeyError:
            raise DiscoveryError("the discovery document lacks an endpoint") from None
        for url in (meta.authorization_endpoint, meta.token_endpoint, meta.jwks_uri):
            await self._check(url)
        self._metadata[issuer] = (time.monotonic() + CACHE_SECONDS, meta)
        return meta

    async def keys(self, meta: ProviderMetadata, *, refresh: bool = False) -> KeySet:
        cached = self._keys.get(meta.jwks_uri)
        if cached and cached[0] > time.monotonic() and not refresh:
            return cached[1]
        data = await self._get_json(meta.jwks_uri)
        try:
            # Only public keys: a JWKS that ships private or symmetric keys is refused outright.
            keys = [k for k in data.get("keys", []) if isinstance(k, dict)]
            if any("d" in k or k.get("kty") == "oct" for k in keys):
                raise DiscoveryError("the provider's JWKS holds private or symmetric keys")
            keyset = KeySet.import_key_set({"keys": keys})
        except (ValueError, TypeError, KeyError):
            raise DiscoveryError("the provider's JWKS is malformed") from None
        self._keys[meta.jwks_uri] = (time.monotonic() + CACHE_SECONDS, keyset)
        return keyset
