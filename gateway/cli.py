"""The `filegate` command: dev, serve, worker, migrate, storage migrate-local, tenant create, keys init, jwt and keys rotate."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import click
import msgspec

from gateway.settings import Settings, SettingsError


def _settings() -> Settings:
    """Settings from the environment; unset URLs are filled from a running `filegate dev` of this data dir."""
    from gateway.embedded import recorded_env

    settings = Settings.from_env()
    recorded = recorded_env(settings.server.data_dir)
    missing = {k: v for k, v in recorded.items() if not _configured(k)}
    if missing:
        settings = Settings.from_env({**os.environ, **missing})
    return settings


def _configured(variable: str) -> bool:
    """The operator set `variable` (or, for a secret, the file variable that holds it)."""
    return bool(os.environ.get(variable) or os.environ.get(variable + "_FILE"))


def _fail(message: str) -> None:
    click.echo(f"filegate: {message}", err=True)
    sys.exit(2)


@click.group()
def main() -> None:
    """Filegate: a multi-tenant file and connector gateway."""


@main.command()
@click.option("--port", type=int, default=None, help="Port of the gateway (default FILEGATE_PORT or 8080).")
def dev(port: int | None) -> None:
    """Run everything on embedded defaults: PostgreSQL, Valkey, migrations, gateway and worker."""
    from gateway import embedded, migrate
    from gateway.logging import configure_logging

    base = Settings.from_env()
    configure_logging(base.server.log_level)
    try:
        servers = embedded.start(base.server.data_dir, base.database.app_role)
    except embedded.EmbeddedError as exc:
        _fail(str(exc))
    try:
        for key, value in servers.env(base.database.app_role).items():
            if not _configured(key):
                os.environ[key] = value
        if port is not None:
            os.environ["FILEGATE_PORT"] = str(port)
        settings = Settings.from_env()
        assert settings.database.migrate_url
        migrate.upgrade(
            settings.database.migrate_url, settings.database.app_role, app_url=settings.database.url
        )
        from gateway.keys import ensure_key_rings

        _migrate_local_storage(settings)
        ensure_key_rings(settings)
        worker = subprocess.Popen([sys.executable, "-m", "gateway.cli", "worker"])
        try:
            click.echo(
                f"filegate: gateway on http://{settings.server.host}:{settings.server.port} "
                f"(data in {settings.server.data_dir.resolve()})",
                err=True,
            )
            _serve(settings)
        finally:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=10)
            except subprocess.TimeoutExpired:
                worker.kill()
    finally:
        servers.stop()


@main.command()
def serve() -> None:
    """Run the gateway (scaled-out shape: PostgreSQL and Redis are configured, not embedded)."""
    from gateway.keys import ensure_key_rings

    settings = _settings()
    try:
        settings.require("DATABASE_URL", "REDIS_URL")
        if settings.server.mode == "production":
            settings.require("JWT_KEYRING")
        ensure_key_rings(settings)
    except SettingsError as exc:
        _fail(str(exc))
    _serve(settings)


HTTP1_BUFFER = 1024 * 1024


def _serve(settings: Settings) -> None:
    from granian.constants import Interfaces, Loops
    from granian.http import HTTP1Settings
    from granian.server import Server

    Server(
        "gateway.asgi:app_from_env",
        address=settings.server.host,
        port=settings.server.port,
        interface=Interfaces.ASGI,
        workers=settings.server.workers,
        loop=Loops.uvloop,
        factory=True,
        log_access=False,  # the gateway writes its own access line, without query strings
        # Bigger reads from the socket: an upload body arrives in fewer, larger chunks. A client gets
        # `header_read_timeout` to send its headers, and an idle keep-alive connection no longer than that
        # to start its next request; a stalled body is cut by the app (FILEGATE_BODY_IDLE_TIMEOUT).
        http1_settings=HTTP1Settings(
            max_buffer_size=HTTP1_BUFFER,
            header_read_timeout=settings.server.header_read_timeout * 1000,
            keep_alive=True,
        ),
    ).serve()


@main.command()
def worker() -> None:
    """Run the arq worker (scans, deliveries, housekeeping)."""
    from arq.worker import run_worker

    from gateway.keys import ensure_key_rings
    from gateway.logging import configure_logging
    from workers.settings import worker_settings

    settings = _settings()
    try:
        settings.require("DATABASE_URL", "REDIS_URL")
        ensure_key_rings(settings)
    except SettingsError as exc:
        _fail(str(exc))
    configure_logging(settings.server.log_level)
    run_worker(worker_settings(settings))


@main.command()
def migrate() -> None:
    """Bring the database schema to the newest version (as the schema owner)."""
    from gateway import migrate as migrations

    settings = _settings()
    try:
        settings.require("MIGRATE_DATABASE_URL")
    except SettingsError as exc:
        _fail(str(exc))
    assert settings.database.migrate_url
    migrations.upgrade(
        settings.database.migrate_url, settings.database.app_role, app_url=settings.database.url
    )
    click.echo("filegate: schema is up to date", err=True)
    storage = _local_storage(settings)
    if settings.database.url and storage.exists():
        _migrate_local_storage(settings)
    elif storage.exists():
        click.echo(
            "filegate: set FILEGATE_DATABASE_URL too, or run `filegate storage migrate-local`, to move local "
            "storage to the tenant-first layout",
            err=True,
        )


@main.group()
def storage() -> None:
    """The gateway's own storage directories."""


@storage.command("migrate-local")
def storage_migrate_local() -> None:
    """Move local-connector objects to `<storage>/<tenant_id>/<base_path>/` (idempotent; rerun after a kill).

    Run it where FILEGATE_DATA_DIR is mounted, before starting gateways and workers of this version
    (`filegate migrate` runs it when it sees the storage directory).
    """
    settings = _settings()
    try:
        settings.require("DATABASE_URL")
    except SettingsError as exc:
        _fail(str(exc))
    _migrate_local_storage(settings)


def _local_storage(settings: Settings) -> Path:
    from gateway.connections.wiring import endpoints

    return endpoints(settings).local_root


def _migrate_local_storage(settings: Settings) -> None:
    from gateway.connections import local_layout
    from gateway.db import Database, create_engine

    if not local_layout.needed(_local_storage(settings)):
        return

    async def roots() -> tuple[list[local_layout.LocalRoot], int]:
        db = Database(create_engine(settings))
        try:
            return await local_layout.local_roots(db)
        finally:
            await db.dispose()

    found, invalid = asyncio.run(roots())
    report = local_layout.migrate_local_storage(_local_storage(settings), found, invalid=invalid)
    click.echo(
        f"filegate: local storage: {report.moved} object(s) moved to the tenant-first layout, "
        f"{report.unclaimed} unclaimed file(s) moved to {local_layout.UNCLAIMED}/",
        err=True,
    )
    if report.conflicts:
        _fail(
            f"{len(report.conflicts)} file(s) were not moved because their new place is taken "
            f"(e.g. {report.conflicts[0]}); resolve them and run `filegate storage migrate-local` again"
        )


@main.group()
def tenant() -> None:
    """Tenant administration (platform operator)."""


@tenant.command("create")
@click.option("--name", required=True)
@click.option("--slug", required=True)
@click.option("--admin-email", required=True)
@click.option(
    "--admin-password",
    prompt=True,
    hide_input=True,
    confirmation_prompt=True,
    help="Prompted when omitted, so it stays out of the shell history.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the JSON that POST /v1/tenants answers.")
def tenant_create(name: str, slug: str, admin_email: str, admin_password: str, as_json: bool) -> None:
    """Create a tenant and its first admin."""
    from gateway.audit import Actor, AuditContext, AuditRecorder
    from gateway.db import Database, create_engine
    from gateway.errors import FilegateError
    from gateway.logging import configure_logging
    from gateway.operator.schemas import TenantCreate
    from gateway.operator.service import TenantService
    from gateway.policy.service import PolicyService
    from tenants.inputs import InvalidInput
    from tenants.passwords import PasswordHashing

    settings = _settings()
    configure_logging("WARNING", stream=sys.stderr)  # stdout carries only the JSON answer
    try:
        settings.require("DATABASE_URL")
        data = msgspec.convert(
            {"name": name, "slug": slug, "admin_email": admin_email, "admin_password": admin_password},
            TenantCreate,
        )
    except (SettingsError, msgspec.ValidationError) as exc:
        _fail(str(exc))

    async def run() -> bytes:
        db = Database(create_engine(settings))
        try:
            audit = AuditRecorder(db)
            service = TenantService(
                db=db,
                hashing=PasswordHashing(
                    time_cost=settings.auth.argon2_time_cost, memory_kib=settings.auth.argon2_memory_kib
                ),
                policy=PolicyService(audit=audit),
                audit=audit,
            )
            created = await service.create(
                data, AuditContext(ip=None, request_id="cli"), actor=Actor("operator")
            )
            return msgspec.json.encode(created)
        finally:
            await db.dispose()

    try:
        out = asyncio.run(run())
    except FilegateError as exc:
        _fail(f"{exc.code}: {exc.detail}")
    except InvalidInput as exc:  # an email the one normal form refuses (invisible characters)
        _fail(f"validation_failed: {exc}")
    if as_json:
        click.echo(out.decode())
    else:
        created = msgspec.json.decode(out)
        click.echo(f"tenant {created['slug']} created: id {created['id']}, admin {created['admin_user_id']}")


@main.group()
def jwt() -> None:
    """Access-token signing keys."""


@jwt.command("rotate")
@click.option(
    "--keyring",
    type=click.Path(path_type=Path),
    default=None,
    help="Key ring file (default FILEGATE_JWT_KEYRING or <data dir>/keys/jwt-keyring.json).",
)
def jwt_rotate(keyring: Path | None) -> None:
    """Add a new signing key (creating the ring if absent); keys past every token's lifetime are dropped.

    Gateways read the ring at start: roll them after rotating.
    """
    from gateway.keys import keyring_path, private_keys_dir
    from tenants.tokens import KeyRing, KeyRingError

    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        _fail(str(exc))
    path = keyring or keyring_path(settings)
    try:
        ring = KeyRing.load(path).rotated(retire_after_seconds=settings.auth.access_token_ttl + 60)
    except KeyRingError:
        if path.exists():
            _fail(f"cannot read the key ring at {path}")
        if settings.server.mode == "production":  # production never generates keys implicitly
            _fail(f"FILEGATE_JWT_KEYRING: no key ring at {path}; create it with `filegate keys init`")
        ring = KeyRing.generate()
    private_keys_dir(settings, path)
    ring.save(path)
    click.echo(
        f"filegate: signing key {ring.current.kid} is current; {len(ring.keys)} key(s) in {path}", err=True
    )


@main.group()
def keys() -> None:
    """Key rings: create both (init); rotate the credential-manager keys (FILEGATE_KEYRING)."""


@keys.command("init")
def keys_init() -> None:
    """Create the JWT and credential key rings where absent (files 0600); an existing ring is kept.

    Run once before the first `filegate serve` in production, which never generates keys; then rotate with
    `filegate jwt rotate` and `filegate keys rotate`.
    """
    from gateway.keys import init_key_rings

    try:
        rings = init_key_rings(Settings.from_env())
    except SettingsError as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"cannot create a key ring: {exc.strerror} ({exc.filename})")
    for ring in rings:
        state = "created" if ring.created else "already there, kept"
        if not ring.loads:
            state += ", but it does not load as a key ring: fix or remove it"
        click.echo(f"filegate: {ring.setting} {ring.where}: {state}", err=True)
    if not all(ring.loads for ring in rings):
        sys.exit(2)


@keys.command("rotate")
def keys_rotate() -> None:
    """Add a new key and rewrap every stored secret under it; rerun after a kill to finish the job.

    A new key is added only when every secret is already under the newest one; otherwise the previous
    rotation is resumed. Gateways and workers read the ring at start: roll them afterwards.
    """
    from connectors.credentials import CredentialManager, LocalKeyRing
    from gateway import rotation
    from gateway.db import Database, create_engine
    from gateway.keys import credential_keyring_path, load_credentials

    settings = _settings()
    try:
        settings.require("DATABASE_URL")
        source = settings.auth.keyring or str(credential_keyring_path(settings))
        if settings.auth.keyring and settings.auth.keyring.lstrip().startswith("{"):
            _fail("FILEGATE_KEYRING holds the keys inline; rotate them where they are kept, then run this")
        load_credentials(settings)  # creates the embedded ring when absent
    except SettingsError as exc:
        _fail(str(exc))
    path = Path(source)

    async def run() -> None:
        db = Database(create_engine(settings))
        try:
            ring = LocalKeyRing.load(source)
            if await rotation.pending(db, CredentialManager(ring)) == 0:
                ring = ring.with_new_key()
                ring.save(path)
                click.echo(f"filegate: key {ring.current_version} added to {path}", err=True)
            else:
                click.echo(f"filegate: resuming the rotation to key {ring.current_version}", err=True)
            credentials = CredentialManager(ring)
            total = await rotation.pending(db, credentials)
            with click.progressbar(length=total, label="rewrapping", file=sys.stderr) as bar:
                done, unreadable = await rotation.rewrap_all(db, credentials, bar.update)
            click.echo(f"filegate: {done} secret(s) rewrapped under key {ring.current_version}", err=True)
            if unreadable:
                _fail(
                    f"{unreadable} stored secret(s) do not open with this key ring; they were left as they are"
                )
        finally:
            await db.dispose()

    asyncio.run(run())


if __name__ == "__main__":
    main()
