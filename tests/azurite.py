"""A private Azurite (scripts/azurite.sh) per xdist worker, and a fresh container per test.

The emulator starts on first use (~1 s) under /tmp on a free port, keeps its data in memory, and stops at
the end of the session. It serves Microsoft's published development account.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from azure.core.credentials import AzureNamedKeyCredential
from azure.storage.blob.aio import ContainerClient

from tests.clamd import free_port

ROOT = Path(__file__).resolve().parents[1]
AZURITE_SH = ROOT / "scripts" / "azurite.sh"
# Azurite's well-known development account (public, in Microsoft's documentation).
ACCOUNT_NAME = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
API_VERSION = "2025-11-05"


@dataclass(frozen=True)
class RunningAzurite:
    dir: Path
    port: int

    @property
    def account_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/{ACCOUNT_NAME}"

    def container_client(self, name: str) -> ContainerClient:
        """A client with the development account's key (independent of the connector under test)."""
        return ContainerClient(
            self.account_url,
            name,
            credential=AzureNamedKeyCredential(ACCOUNT_NAME, ACCOUNT_KEY),
            api_version=API_VERSION,
        )


@dataclass(frozen=True)
class Container:
    azurite: RunningAzurite
    name: str
    client: ContainerClient

    async def blob_names(self, prefix: str = "", *, uncommitted: bool = False) -> list[str]:
        include = ["uncommittedblobs"] if uncommitted else None
        return [
            b.name async for b in self.client.list_blobs(name_starts_with=prefix or None, include=include)
        ]


def azurite_sh(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(AZURITE_SH), *args],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="session")
def azurite_server(worker_id: str) -> Iterator[RunningAzurite]:
    """This worker's Azurite (blob service only, in memory)."""
    directory = Path(tempfile.mkdtemp(prefix=f"filegate-azurite-{worker_id}-"))
    output = ""
    running: RunningAzurite | None = None
    for _ in range(3):  # another process may take the free port first
        port = free_port()
        result = azurite_sh("start", str(directory), str(port))
        if result.returncode == 0:
            running = RunningAzurite(directory, port)
            break
        output = result.stdout + result.stderr
        azurite_sh("stop", str(directory))
    if running is None:
        shutil.rmtree(directory, ignore_errors=True)
        pytest.fail(f"scripts/azurite.sh start failed:\n{output}")
    yield running
    result = azurite_sh("stop", str(directory))
    assert result.returncode == 0, result.stdout + result.stderr
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
async def azure_container(azurite_server: RunningAzurite) -> AsyncIterator[Container]:
    """A new, empty container for one test; deleted (with its blobs) afterwards."""
    name = f"fg-{uuid.uuid4().hex[:20]}"
    client = azurite_server.container_client(name)
    await client.create_container()
    try:
        yield Container(azurite_server, name, client)
    finally:
        try:
            await client.delete_container()
        finally:
            await client.close()
