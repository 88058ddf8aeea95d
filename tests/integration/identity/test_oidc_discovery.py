"""OIDC discovery and JWKS fetches under the connector address rule, past the first check: a provider name
that rebinds to an internal address between the check and the connection, and a provider that redirects."""

from __future__ import annotations

import pytest

from gateway.oidc.discovery import Discovery, DiscoveryError
from tests.fakes.ssrf import RebindingDns, internal_target, redirector


async def test_issuer_rebound_to_an_internal_address_is_refused_at_connect(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dns = RebindingDns("idp.rebind.test")
    monkeypatch.setattr("socket.getaddrinfo", dns.getaddrinfo)
    with internal_target() as target:
        discovery = Discovery(allow_private=False)
        with pytest.raises(DiscoveryError) as caught:
            await discovery.metadata(f"https://idp.rebind.test:{target.port}")
    assert dns.asked >= 2, "the name was resolved again to connect"
    assert target.connections == [], "discovery connected to the rebound internal address"
    assert "address" in str(caught.value)


async def test_discovery_redirect_to_an_internal_address_is_not_followed() -> None:
    with internal_target() as target, redirector(target.url) as hostile:
        discovery = Discovery(allow_private=True)  # even where private addresses are allowed
        with pytest.raises(DiscoveryError) as caught:
            await discovery.metadata(hostile.url)
    assert hostile.requests == ["GET /.well-known/openid-configuration"]
    assert target.connections == [], "the discovery redirect to the internal address was followed"
    assert "redirect" in str(caught.value)
