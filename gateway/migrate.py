"""`filegate migrate`: run Alembic as the schema owner, then give the app role its login."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(url: str, app_role: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["url"] = url
    cfg.attributes["app_role"] = app_role
    return cfg


def upgrade(owner_url: str, app_role: str, *, app_url: str | None = None) -> None:
    """Bring the schema to head; when `app_url` names the app role with a password, set that password."""
    command.upgrade(alembic_config(owner_url, app_role), "head")
    if app_url:
        asyncio.run(_provision_login(owner_url, app_role, app_url))


async def _provision_login(owner_url: str, app_role: str, app_url: str) -> None:
    parsed = make_url(app_url)
    if parsed.username != app_role or not parsed.password:
        return
    engine = create_async_engine(owner_url, hide_parameters=True)
    try:
        async with engine.begin() as conn:
            # Identifiers and the password literal cannot be bound parameters in ALTER ROLE.
            quoted = (
                await conn.execute(
                    text("SELECT quote_ident(:r), quote_literal(:p)"), {"r": app_role, "p": parsed.password}
                )
            ).one()
            await conn.execute(text(f"ALTER ROLE {quoted[0]} LOGIN PASSWORD {quoted[1]}"))
    finally:
        await engine.dispose()
