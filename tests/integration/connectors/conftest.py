"""Fixtures for the connector tests: local fakes of the remote services, each started and stopped per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from connectors.factory import Endpoints
from connectors.instagram import InstagramPublisher
from connectors.schemas import InstagramConfig, InstagramSecrets
from tests.fakes.instagram import FakeInstagram, MediaHost, hosting, running


# --- Instagram ------------------------------------------------------------------------------------------
@pytest.fixture
def instagram_fake() -> Iterator[FakeInstagram]:
    """The fake Graph API on its own port: a fresh account, token and history for each test."""
    with running(FakeInstagram()) as fake:
        yield fake


@pytest.fixture
def instagram_media() -> Iterator[MediaHost]:
    """Stands in for the gateway's signed media URLs that Instagram fetches."""
    with hosting(MediaHost()) as host:
        yield host


@pytest.fixture
async def instagram_publisher(
    instagram_fake: FakeInstagram, tmp_path: Path
) -> AsyncIterator[InstagramPublisher]:
    publisher = InstagramPublisher(
        InstagramConfig(ig_user_id=instagram_fake.ig_user_id, graph_api_version="v21.0"),
        InstagramSecrets(access_token=instagram_fake.token),
        Endpoints(local_root=tmp_path, instagram_url=instagram_fake.url),
        poll_interval=0.01,
        max_poll_interval=0.05,
        max_wait=5.0,
        timeout=10.0,
    )
    yield publisher
    await publisher.aclose()
