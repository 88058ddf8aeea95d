"""Connection fixtures: settings that allow local endpoints and retry deliveries quickly, a local connection."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from gateway.settings import Settings
from tests.factories import TenantHandle
from tests.integration.uploads.conftest import RunWorker, run_worker  # noqa: F401  (shared fixture)

__all__ = ["RunWorker"]


@pytest.fixture
def settings(settings: Settings, clamd_url: str) -> Settings:
    return msgspec.structs.replace(
        settings,
        scanning=msgspec.structs.replace(
            settings.scanning, clamd_url=clamd_url, retry_base=0.05, reconcile_grace=0, max_tries=3
        ),
        connectors=msgspec.structs.replace(
            settings.connectors, allow_private=True, delivery_retry_base=0.05, delivery_max_tries=2
        ),
    )


async def create_connection(
    client: AsyncTestClient,  # type: ignore[type-arg]
    tenant: TenantHandle,
    kind: str = "local",
    config: dict[str, Any] | None = None,
    secrets: dict[str, Any] | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": name or f"{kind}-destination",
        "kind": kind,
        "config": config if config is not None else {"base_path": "media"},
    }
    if secrets is not None:
        body["secrets"] = secrets
    r = await client.post("/v1/connections", json=body, headers=tenant.admin.headers)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]
