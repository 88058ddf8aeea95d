"""The Azure Blob connector against a real Azurite (tests/azurite.py): a fresh container per test."""

from __future__ import annotations

import asyncio
import base64
import os
import traceback
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
from azure.storage.blob import ContainerSasPermissions, generate_container_sas

from connectors.azure_blob import BLOCK, AzureBlobConnector, account_name_of, block_size_for
from connectors.base import (
    AuthFailed,
    Connector,
    ConnectorError,
    ObjectNotFound,
    Rejected,
    Unavailable,
)
from connectors.endpoints import check_endpoint
from connectors.factory import Endpoints, open_connector
from connectors.paths import ObjectRoot
from connectors.schemas import AzureBlobConfig, AzureBlobSecrets
from tests.azurite import ACCOUNT_KEY, ACCOUNT_NAME, Container, RunningAzurite
from tests.clamd import free_port
from tests.fakes.sharepoint import FakeCA, FakeSharePoint
from tests.fakes.ssrf import RebindingDns, internal_target, redirector

MIB = 1024 * 1024
WRONG_KEY = base64.b64encode(b"not-the-account-key-" * 3).decode()


def make(
    account_url: str, container: str, tmp_path: Path, *, retry_total: int = 3, **secrets: str
) -> AzureBlobConnector:
    return AzureBlobConnector(
        msgspec.convert({"account_url": account_url, "container": container}, AzureBlobConfig),
        msgspec.convert(secrets or {"account_key": ACCOUNT_KEY}, AzureBlobSecrets),
        Endpoints(local_root=tmp_path, allow_private=True),
        retry_total=retry_total,
    )


@pytest.fixture
async def azure(azure_container: Container, tmp_path: Path) -> AsyncIterator[AzureBlobConnector]:
    connector = make(azure_container.azurite.account_url, azure_container.name, tmp_path)
    yield connector
    await connector.aclose()


async def stream(data: bytes, chunk: int = MIB + 7) -> AsyncIterator[bytes]:
    for i in range(0, len(data), chunk):
        yield data[i : i + chunk]


async def read_all(chunks: AsyncIterator[bytes]) -> bytes:
    return b"".join([c async for c in chunks])


def assert_safe(exc: ConnectorError, *secrets: str) -> None:
    shown = [str(exc), exc.detail, repr(exc), "".join(traceback.format_exception(exc))]
    for secret in secrets:
        for text in shown:
            assert secret not in text


def test_account_name_comes_from_the_url() -> None:
    assert account_name_of("https://acme.blob.core.windows.net") == "acme"
    assert account_name_of("http://127.0.0.1:10000/devstoreaccount1") == ACCOUNT_NAME
    assert account_name_of("http://localhost:10000/devstoreaccount1/") == ACCOUNT_NAME


def test_block_size_grows_only_past_the_block_limit() -> None:
    assert block_size_for(20 * MIB) == BLOCK
    assert block_size_for(BLOCK * 50_000) == BLOCK
    big = 190 * 1024**4  # Azure's largest block blob
    assert block_size_for(big) % MIB == 0
    assert big / block_size_for(big) < 50_000


async def test_connector_is_built_by_the_factory(azure_container: Container, tmp_path: Path) -> None:
    config = msgspec.convert(
        {"account_url": azure_container.azurite.account_url, "container": azure_container.name},
        AzureBlobConfig,
    )
    endpoints = Endpoints(local_root=tmp_path, allow_private=True, azure_api_version="2025-11-05")
    connector = open_connector(
        config, AzureBlobSecrets(account_key=ACCOUNT_KEY), endpoints, ObjectRoot.of(uuid.uuid4(), None)
    )
    try:
        assert isinstance(connector, AzureBlobConnector)
        assert isinstance(connector, Connector)
        assert await connector.test() == "the container is reachable with these credentials"
    finally:
        await connector.aclose()


async def test_small_file_round_trip(azure: AzureBlobConnector, azure_container: Container) -> None:
    data = os.urandom(300_001)
    info = await azure.put("t/a/small.bin", stream(data, 65_536), size=len(data), content_type="image/png")
    assert (info.key, info.size) == ("t/a/small.bin", len(data))
    assert await read_all(azure.get("t/a/small.bin")) == data
    blob = azure_container.client.get_blob_client("t/a/small.bin")
    props = await blob.get_blob_properties()
    assert props.content_settings.content_type == "image/png"
    committed, _ = await blob.get_block_list("committed")
    assert committed == []  # a single Put Blob, not a block list
    stat = await azure.stat("t/a/small.bin")
    assert stat.size == len(data)
    assert stat.modified_at is not None


async def test_empty_file_round_trip(azure: AzureBlobConnector) -> None:
    await azure.put("t/empty", stream(b""), size=0, content_type=None)
    assert await read_all(azure.get("t/empty")) == b""
    assert (await azure.stat("t/empty")).size == 0


async def test_large_file_is_uploaded_in_blocks(
    azure: AzureBlobConnector, azure_container: Container
) -> None:
    data = os.urandom(20 * MIB)
    info = await azure.put("t/big.bin", stream(data), size=len(data), content_type="application/pdf")
    assert info.size == len(data)
    blob = azure_container.client.get_blob_client("t/big.bin")
    committed, uncommitted = await blob.get_block_list("all")
    assert [b.size for b in committed] == [BLOCK, BLOCK, 4 * MIB]
    assert len({len(b.id) for b in committed}) == 1  # Azure wants ids of one length
    assert uncommitted == []
    props = await blob.get_blob_properties()
    assert props.content_settings.content_type == "application/pdf"
    chunks = [c async for c in azure.get("t/big.bin")]
    assert b"".join(chunks) == data
    assert max(len(c) for c in chunks) <= 4 * MIB  # streamed in ranged reads


async def test_put_replaces_a_blob(azure: AzureBlobConnector) -> None:
    await azure.put("t/x", stream(b"first"), size=5, content_type=None)
    await azure.put("t/x", stream(b"second!"), size=7, content_type=None)
    assert await read_all(azure.get("t/x")) == b"second!"
    data = os.urandom(BLOCK + 3)
    await azure.put("t/x", stream(data), size=len(data), content_type=None)
    assert await read_all(azure.get("t/x")) == data


async def test_missing_object(azure: AzureBlobConnector) -> None:
    with pytest.raises(ObjectNotFound):
        await azure.stat("t/nope")
    chunks = azure.get("t/nope")  # nothing happens before the first iteration
    with pytest.raises(ObjectNotFound):
        await read_all(chunks)


async def test_list_pages_with_a_cursor_and_filters_by_prefix(azure: AzureBlobConnector) -> None:
    keys = [f"t/p/{name}" for name in ("a", "b", "c", "d", "e")]
    for key in [*keys, "t/q/a", "t/pz"]:
        await azure.put(key, stream(key.encode()), size=len(key), content_type=None)

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = await azure.list("t/p/", cursor=cursor, limit=2)
        pages += 1
        assert len(page.items) <= 2
        seen += [item.key for item in page.items]
        assert all(item.size == len(item.key) for item in page.items)
        assert all(item.modified_at is not None for item in page.items)
        cursor = page.cursor
        if cursor is None:
            break
        assert pages < 10
    assert seen == keys
    assert pages == 3

    everything = await azure.list("t/", cursor=None, limit=100)
    assert [i.key for i in everything.items] == [*keys, "t/pz", "t/q/a"]
    assert everything.cursor is None
    assert (await azure.list("t/none/", cursor=None, limit=10)).items == []


async def test_delete_and_delete_of_an_absent_key(
    azure: AzureBlobConnector, azure_container: Container
) -> None:
    await azure.put("t/gone", stream(b"x"), size=1, content_type=None)
    await azure.delete("t/gone")
    assert await azure_container.blob_names() == []
    await azure.delete("t/gone")
    await azure.delete("t/never-existed")
    with pytest.raises(ObjectNotFound):
        await azure.stat("t/gone")


async def test_test_is_a_real_round_trip(azure: AzureBlobConnector) -> None:
    assert await azure.test() == "the container is reachable with these credentials"


async def test_sas_token_round_trip(azure_container: Container, tmp_path: Path) -> None:
    sas = generate_container_sas(
        ACCOUNT_NAME,
        azure_container.name,
        account_key=ACCOUNT_KEY,
        permission=ContainerSasPermissions(read=True, write=True, delete=True, list=True),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    connector = make(azure_container.azurite.account_url, azure_container.name, tmp_path, sas_token=sas)
    try:
        data = os.urandom(BLOCK + 1000)
        await connector.put("t/sas", stream(data), size=len(data), content_type=None)
        assert await read_all(connector.get("t/sas")) == data
        assert [i.key for i in (await connector.list("t/", cursor=None, limit=10)).items] == ["t/sas"]
        await connector.delete("t/sas")
    finally:
        await connector.aclose()


async def test_tampered_sas_token_is_auth_failed_and_never_shown(
    azure_container: Container, tmp_path: Path
) -> None:
    sas = generate_container_sas(
        ACCOUNT_NAME,
        azure_container.name,
        account_key=WRONG_KEY,
        permission=ContainerSasPermissions(read=True, write=True, list=True),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    connector = make(azure_container.azurite.account_url, azure_container.name, tmp_path, sas_token=sas)
    signature = sas.split("sig=", 1)[1].split("&", 1)[0]
    try:
        with pytest.raises(AuthFailed) as caught:
            await connector.put("t/x", stream(b"data"), size=4, content_type=None)
        assert_safe(caught.value, sas, signature)
        with pytest.raises(AuthFailed) as caught:
            await read_all(connector.get("t/x"))
        assert_safe(caught.value, sas, signature)
    finally:
        await connector.aclose()


async def test_wrong_account_key_is_auth_failed_and_never_shown(
    azure_container: Container, tmp_path: Path
) -> None:
    connector = make(
        azure_container.azurite.account_url, azure_container.name, tmp_path, account_key=WRONG_KEY
    )
    try:
        failures: list[ConnectorError] = []
        attempts: list[Any] = [
            connector.test(),
            connector.stat("t/x"),
            connector.list("", cursor=None, limit=5),
            connector.put("t/x", stream(b"data"), size=4, content_type=None),
            connector.put("t/y", stream(os.urandom(BLOCK + 1)), size=BLOCK + 1, content_type=None),
            read_all(connector.get("t/x")),
            connector.delete("t/x"),
        ]
        for attempt in attempts:
            with pytest.raises(AuthFailed) as caught:
                await attempt
            failures.append(caught.value)
        for exc in failures:
            assert exc.code == "connector_auth_failed"
            assert_safe(exc, WRONG_KEY, ACCOUNT_KEY)
        assert await azure_container.blob_names(uncommitted=True) == []
    finally:
        await connector.aclose()


async def test_missing_container_is_rejected(azurite_server: RunningAzurite, tmp_path: Path) -> None:
    connector = make(azurite_server.account_url, "fg-no-such-container", tmp_path)
    try:
        with pytest.raises(Rejected, match="the container does not exist"):
            await connector.test()
        with pytest.raises(Rejected, match="the container does not exist"):
            await connector.list("", cursor=None, limit=5)
        with pytest.raises(Rejected, match="the container does not exist"):
            await connector.put("t/x", stream(b"data"), size=4, content_type=None)
        with pytest.raises(Rejected, match="the container does not exist"):
            await connector.put("t/x", stream(os.urandom(BLOCK + 1)), size=BLOCK + 1, content_type=None)
    finally:
        await connector.aclose()


async def test_unreachable_endpoint_is_unavailable(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/{ACCOUNT_NAME}"
    connector = make(url, "fg-anything", tmp_path, retry_total=0)
    try:
        with pytest.raises(Unavailable) as caught:
            await connector.test()
        assert caught.value.retryable
        assert "127.0.0.1" not in caught.value.detail
        with pytest.raises(Unavailable):
            await connector.put("t/x", stream(b"data"), size=4, content_type=None)
    finally:
        await connector.aclose()


class Boom(Exception):
    pass


async def failing_after(data: bytes, fail_at: int) -> AsyncIterator[bytes]:
    sent = 0
    for chunk in (data[i : i + MIB] for i in range(0, len(data), MIB)):
        if sent >= fail_at:
            raise Boom("the source broke")
        sent += len(chunk)
        yield chunk


async def test_failing_source_leaves_no_blob_and_no_uncommitted_blocks(
    azure: AzureBlobConnector, azure_container: Container
) -> None:
    data = os.urandom(20 * MIB)
    with pytest.raises(Boom):  # after two blocks were staged
        await azure.put("t/broken", failing_after(data, 17 * MIB), size=len(data), content_type=None)
    assert await azure_container.blob_names(uncommitted=True) == []

    with pytest.raises(Boom):  # before the first block was full
        await azure.put("t/broken", failing_after(data, 3 * MIB), size=len(data), content_type=None)
    assert await azure_container.blob_names(uncommitted=True) == []


async def test_failing_put_over_an_existing_blob_keeps_it(
    azure: AzureBlobConnector, azure_container: Container
) -> None:
    await azure.put("t/keep", stream(b"old"), size=3, content_type=None)
    data = os.urandom(20 * MIB)
    with pytest.raises(Boom):
        await azure.put("t/keep", failing_after(data, 17 * MIB), size=len(data), content_type=None)
    assert await read_all(azure.get("t/keep")) == b"old"


async def test_cancelled_put_leaves_no_blob(azure: AzureBlobConnector, azure_container: Container) -> None:
    stalled = asyncio.Event()

    async def stalls_after_a_block() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield os.urandom(MIB)
        stalled.set()
        await asyncio.Event().wait()  # the client went away
        yield b""

    task = asyncio.create_task(
        azure.put("t/cancelled", stalls_after_a_block(), size=30 * MIB, content_type=None)
    )
    await asyncio.wait_for(stalled.wait(), 30)
    for _ in range(100):  # until the first block is staged: there is something to clean up
        if await azure_container.blob_names(uncommitted=True):
            break
        await asyncio.sleep(0.05)
    assert await azure_container.blob_names(uncommitted=True) == ["t/cancelled"]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await azure_container.blob_names(uncommitted=True) == []


async def test_a_stream_shorter_than_announced_is_rejected(
    azure: AzureBlobConnector, azure_container: Container
) -> None:
    with pytest.raises(Rejected, match="announced size"):
        await azure.put("t/short", stream(b"abc"), size=10, content_type=None)
    data = os.urandom(9 * MIB)
    with pytest.raises(Rejected, match="announced size"):
        await azure.put("t/short", stream(data), size=len(data) + 1, content_type=None)
    with pytest.raises(Rejected, match="announced size"):  # refused as soon as it overflows
        await azure.put("t/short", stream(data), size=3 * MIB, content_type=None)
    assert await azure_container.blob_names(uncommitted=True) == []


async def test_account_url_rebound_to_an_internal_address_is_refused_at_connect(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """DNS rebinding: the name is public when the account URL is checked, internal when aiohttp connects."""
    dns = RebindingDns("blob.rebind.test")
    monkeypatch.setattr("socket.getaddrinfo", dns.getaddrinfo)
    with internal_target() as target:
        url = f"https://blob.rebind.test:{target.port}"
        endpoints = Endpoints(local_root=tmp_path)
        check_endpoint(url, allow_private=endpoints.allow_private)  # what open_connector checks: public
        assert dns.asked == 1
        connector = AzureBlobConnector(
            AzureBlobConfig(account_url=url, container="media"),
            AzureBlobSecrets(account_key=ACCOUNT_KEY),
            endpoints,
            retry_total=0,
        )
        try:
            with pytest.raises(ConnectorError) as caught:
                await connector.test()
        finally:
            await connector.aclose()
    assert target.connections == [], "aiohttp connected to the rebound internal address"
    assert isinstance(caught.value, Rejected) and "address" in caught.value.detail


async def test_storage_redirect_to_an_internal_address_is_not_followed(tmp_path: Path) -> None:
    """A storage endpoint answering 302 to an internal URL: azure-core's redirect policy must not follow."""
    with internal_target() as target, redirector(target.url) as hostile:
        connector = make(
            f"{hostile.url}/devstoreaccount1", "media", tmp_path, retry_total=0
        )  # allow_private: even where private addresses are allowed
        try:
            with pytest.raises(ConnectorError) as caught:
                await connector.stat("tenant/a.bin")
            with pytest.raises(ConnectorError):
                await read_all(connector.get("tenant/a.bin"))
        finally:
            await connector.aclose()
    assert len(hostile.requests) == 2
    assert target.connections == [], "the redirect to the internal address was followed"
    assert isinstance(caught.value, Rejected) and "redirect" in caught.value.detail


async def test_service_principal_login_redirect_is_not_followed(tmp_path: Path) -> None:
    """The service principal's token request (azure-identity, to the operator's login URL, here the Entra
    fake of tests/fakes/sharepoint.py) answered with a redirect to an internal address."""
    tenant, client = str(uuid.uuid4()), str(uuid.uuid4())
    ca = FakeCA(tmp_path / "ca")
    login = FakeSharePoint(ca, tenant_id=tenant, client_id=client)
    login.register_secret("sp-secret")
    with login.running(), internal_target() as target:
        login.redirect_to, login.redirect_prefix = f"{target.url}/metadata/", f"/{tenant}/"
        connector = AzureBlobConnector(
            AzureBlobConfig(account_url="https://127.0.0.1:9/devstoreaccount1", container="media"),
            AzureBlobSecrets(tenant_id=tenant, client_id=client, client_secret="sp-secret"),
            Endpoints(local_root=tmp_path, login_url=login.base, ca_bundle=str(ca.ca_path)),
            retry_total=0,
        )
        try:
            with pytest.raises(ConnectorError) as caught:
                await connector.test()
        finally:
            await connector.aclose()
    assert [r.status for r in login.requests] == [302], "the token request reached the login service"
    assert target.connections == [], "the login redirect to the internal address was followed"
    assert isinstance(caught.value, Rejected) and "redirect" in caught.value.detail
