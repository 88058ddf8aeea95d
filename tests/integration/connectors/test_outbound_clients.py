"""Every kind of outbound client `connectors.outbound` builds (httpx, requests, botocore, azure-core on
aiohttp), against real servers on loopback, under an injected rule and resolver: the pinning is exercised
even though the tests otherwise allow private addresses.

The rule permits 127.0.0.1 only. `storage.test` resolves to 127.0.0.1 the first time and to 127.0.0.2
after that; an internal target listens on 127.0.0.2, on the same port as the allowed service on 127.0.0.1.
Each connection must resolve and check again (a name that was fine for the first connection is not for the
next), an IP literal is checked too, and no client follows a redirect.
"""

from __future__ import annotations

import asyncio
import ipaddress
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest
from azure.core.pipeline import AsyncPipeline
from azure.core.rest import HttpRequest
from botocore.config import Config
from botocore.exceptions import ClientError

from connectors.base import ConnectorError
from connectors.outbound import (
    AddressNotAllowed,
    IPAddress,
    Outbound,
    RedirectRefused,
    system_resolver,
)
from tests.fakes.ssrf import InternalTarget, internal_target

ALLOWED = "127.0.0.1"
INTERNAL = "127.0.0.2"


@dataclass(frozen=True)
class Only:
    allowed: str

    def permits(self, address: IPAddress) -> bool:
        return str(address) == self.allowed


class Rebinding:
    """`storage.test` → 127.0.0.1 once, then 127.0.0.2; anything else as the system resolves it."""

    def __init__(self) -> None:
        self.asked = 0

    def __call__(self, host: str, port: int) -> list[IPAddress]:
        if host != "storage.test":
            return system_resolver(host, port)
        self.asked += 1
        return [ipaddress.ip_address(ALLOWED if self.asked == 1 else INTERNAL)]


@dataclass
class Service:
    port: int
    paths: list[str]


@pytest.fixture
def service() -> Iterator[Service]:
    """The allowed service, on a free port of 127.0.0.1; every answer closes the connection (the next
    request opens a new one), `/redirect` answers 302 to the internal target (same port, 127.0.0.2)."""
    seen = Service(0, [])

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            seen.paths.append(self.path)
            redirect = self.path.startswith("/redirect")
            self.send_response(302 if redirect else 200)
            if redirect:
                self.send_header("Location", f"http://{INTERNAL}:{seen.port}/latest/meta-data/")
            self.send_header("Content-Length", "0")
            self.send_header("Connection", "close")
            self.end_headers()

        do_GET = do_HEAD = do_PUT = do_POST = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((ALLOWED, 0), Handler)
    seen.port = server.server_address[1]
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def target(service: Service) -> Iterator[InternalTarget]:
    """The internal target, on 127.0.0.2 at the allowed service's port (bound first, on 127.0.0.1: another
    process holding that port there made this fixture fail now and then)."""
    with internal_target(INTERNAL, service.port) as t:
        yield t


# --- one GET per client kind; each answers the status, or raises ------------------------------------------
async def with_httpx(outbound: Outbound, url: str) -> int:
    async with outbound.httpx_client(timeout=5) as client:
        return (await client.get(url)).status_code


async def with_requests(outbound: Outbound, url: str) -> int:
    def get() -> int:
        with outbound.requests_session() as session:
            return session.get(url).status_code

    return await asyncio.to_thread(get)


async def with_botocore(outbound: Outbound, url: str) -> int:
    def head() -> int:
        config = Config(retries={"max_attempts": 1}, connect_timeout=5, read_timeout=5)
        endpoint, _, path = url.partition("/redirect")
        client = boto3.session.Session(
            aws_access_key_id="AKIAEXAMPLE", aws_secret_access_key="example", region_name="us-east-1"
        ).client("s3", endpoint_url=endpoint, config=config)
        sender = outbound.botocore_sender(config)
        sender.attach(client)
        try:
            client.head_bucket(Bucket="redirect" if path or url.endswith("/redirect") else "bucket")
            return 200
        except ClientError as exc:
            return int(exc.response["ResponseMetadata"]["HTTPStatusCode"])
        finally:
            client.close()
            sender.close()

    return await asyncio.to_thread(head)


async def with_azure(outbound: Outbound, url: str) -> int:
    async with AsyncPipeline(outbound.azure_transport()) as pipeline:
        answer = await pipeline.run(HttpRequest("GET", url))
        return int(answer.http_response.status_code)


Fetch = Callable[[Outbound, str], Awaitable[int]]
KINDS: dict[str, Fetch] = {
    "httpx": with_httpx,
    "requests": with_requests,
    "botocore": with_botocore,
    "azure-aiohttp": with_azure,
}


@pytest.mark.parametrize("kind", KINDS)
async def test_a_name_rebound_after_the_first_connection_is_refused_on_the_next(
    kind: str, service: Service, target: InternalTarget
) -> None:
    resolver = Rebinding()
    outbound = Outbound(rule=Only(ALLOWED), resolver=resolver)
    fetch = KINDS[kind]
    assert await fetch(outbound, f"http://storage.test:{service.port}/first") == 200
    with pytest.raises(AddressNotAllowed):
        await fetch(outbound, f"http://storage.test:{service.port}/second")
    assert resolver.asked == 2, "each connection resolved the name itself"
    assert len(service.paths) == 1
    assert target.connections == [], f"{kind} connected to the rebound internal address"


@pytest.mark.parametrize("kind", KINDS)
async def test_an_ip_literal_is_checked_too(kind: str, target: InternalTarget) -> None:
    outbound = Outbound(rule=Only(ALLOWED))
    with pytest.raises(AddressNotAllowed):
        await KINDS[kind](outbound, f"http://{INTERNAL}:{target.port}/latest/meta-data/")
    assert target.connections == []


@pytest.mark.parametrize("kind", KINDS)
async def test_no_client_follows_a_redirect(kind: str, service: Service, target: InternalTarget) -> None:
    """Even with every address allowed: the redirect itself is refused."""
    outbound = Outbound.for_tenants(allow_private=True)
    with pytest.raises(RedirectRefused):
        await KINDS[kind](outbound, f"http://{ALLOWED}:{service.port}/redirect")
    assert service.paths and target.connections == [], f"{kind} followed the redirect"


async def test_refusals_are_connector_errors_with_safe_details() -> None:
    refused = [AddressNotAllowed(), RedirectRefused("https://signed.example/blob?sig=secret")]
    for error in refused:
        assert isinstance(error, ConnectorError) and error.code == "connector_rejected"
        assert "secret" not in error.detail and "127." not in error.detail
