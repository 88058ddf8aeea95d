"""ASGI entry for servers: `granian --factory gateway.asgi:app_from_env`."""

from __future__ import annotations

from litestar import Litestar

from gateway.app import create_app
from gateway.logging import configure_logging
from gateway.settings import Settings


def app_from_env() -> Litestar:
    settings = Settings.from_env()
    configure_logging(settings.server.log_level)
    return create_app(settings)
