"""Upload fixtures: a real worker (arq, burst mode) run on demand against the real clamd, Redis and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import msgspec
import pytest
from arq.worker import Worker

from gateway.settings import Settings
from workers.settings import worker_settings


@pytest.fixture
def settings(settings: Settings, clamd_url: str) -> Settings:
    """The app's settings with the test clamd and quick retries."""
    return msgspec.structs.replace(
        settings,
        scanning=msgspec.structs.replace(
            settings.scanning, clamd_url=clamd_url, retry_base=0.05, reconcile_grace=0, max_tries=3
        ),
    )


RunWorker = Callable[..., Coroutine[Any, Any, None]]


@pytest.fixture
def run_worker(settings: Settings) -> RunWorker:
    """Run the real worker until its queue is empty (including deferred retries)."""

    async def run(timeout: float = 60, **overrides: Any) -> None:
        ws = worker_settings(msgspec.structs.replace(settings, **overrides) if overrides else settings)
        ws.update(cron_jobs=[], handle_signals=False)  # the tests call the reconciler themselves
        worker = Worker(**ws, burst=True)
        try:
            await asyncio.wait_for(worker.main(), timeout)
        finally:
            await worker.close()

    return run
