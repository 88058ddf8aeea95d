"""A tenant chooses an endpoint's host, and so the DNS server that answers for it.

The address check resolves that host. Done on the event loop, a DNS server that takes its time (the
tenant's own, on purpose) stalled every request of the process while it thought it over.
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import httpx
import msgspec
import pytest
from litestar.testing import AsyncTestClient

from gateway.settings import Settings
from tests.factories import create_tenant

SLOW_HOST = "slow-dns.filegate.test"
DNS_DELAY = 2.0


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # Public endpoints only: the address rule resolves the host (with private ones allowed it need not).
    return msgspec.structs.replace(
        settings, connectors=msgspec.structs.replace(settings.connectors, allow_private=False)
    )


@pytest.fixture
def slow_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == SLOW_HOST:
            time.sleep(DNS_DELAY)  # what a resolver waiting on a slow DNS server does: it blocks
            raise socket.gaierror(socket.EAI_NONAME, "unknown host")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.mark.usefixtures("slow_dns")
async def test_an_endpoint_on_a_slow_dns_server_does_not_stall_other_requests(
    client: AsyncTestClient,  # type: ignore[type-arg]
    racing_client: httpx.AsyncClient,
) -> None:
    tenant = await create_tenant(client)
    body = {
        "name": "slow",
        "kind": "s3",
        "config": {"bucket": "media-bucket", "region": "eu-west-1", "endpoint_url": f"https://{SLOW_HOST}"},
        "secrets": {"access_key_id": "AKIDEXAMPLE", "secret_access_key": "s" * 40},
    }
    started = time.monotonic()
    create = asyncio.create_task(
        racing_client.post("/v1/connections", json=body, headers=tenant.admin.headers)
    )
    await asyncio.sleep(0.3)  # the create is resolving the host now
    live = await racing_client.get("/health/live")
    # Measured from before the create: a loop blocked by the resolver also delays the end of that sleep.
    waited = time.monotonic() - started - 0.3
    assert live.status_code == 200
    assert waited < DNS_DELAY / 2, f"another request waited {waited:.2f} s for the tenant's DNS"
    created = await create
    assert created.status_code == 422, created.text
    assert created.json()["code"] == "connector_rejected"


@pytest.mark.usefixtures("slow_dns")
async def test_an_oidc_issuer_on_a_slow_dns_server_does_not_stall_other_requests(
    client: AsyncTestClient,  # type: ignore[type-arg]
    racing_client: httpx.AsyncClient,
) -> None:
    # The sign-in start is unauthenticated: anyone could send it again and again for such a provider.
    tenant = await create_tenant(client)
    body = {"issuer": f"https://{SLOW_HOST}", "client_id": "filegate", "client_secret": "s" * 32}
    put = await client.put("/v1/identity-providers/slow", json=body, headers=tenant.admin.headers)
    assert put.status_code == 200, put.text
    started = time.monotonic()
    login = asyncio.create_task(
        racing_client.get("/v1/auth/oidc/slow/login", params={"tenant": tenant.slug, "redirect_to": "/"})
    )
    await asyncio.sleep(0.3)
    live = await racing_client.get("/health/live")
    waited = time.monotonic() - started - 0.3
    assert live.status_code == 200
    assert waited < DNS_DELAY / 2, f"another request waited {waited:.2f} s for the tenant's DNS"
    answer = await login
    assert answer.status_code == 502, answer.text
    assert answer.json()["code"] == "provider_unavailable"
