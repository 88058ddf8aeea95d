"""`filegate storage migrate-local`: objects of the old layout `<storage>/<base_path>/<tenant_id>/` move to
`<storage>/<tenant_id>/<base_path>/`, idempotently and resumably, and then the broker serves them."""

from __future__ import annotations

import json
from pathlib import Path

from litestar.testing import AsyncTestClient

from connectors.local import LAYOUT_MARKER
from gateway.connections import local_layout
from gateway.db import Database, create_engine
from gateway.settings import Settings
from tests.factories import create_tenant
from tests.integration.connections.conftest import create_connection


def _put(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


async def _roots(settings: Settings) -> list[local_layout.LocalRoot]:
    db = Database(create_engine(settings))
    try:
        roots, invalid = await local_layout.local_roots(db)
    finally:
        await db.dispose()
    assert invalid == 0
    return roots


async def test_old_layout_moves_to_tenant_first_and_is_served(
    client: AsyncTestClient,  # type: ignore[type-arg]
    settings: Settings,
) -> None:
    storage = settings.server.data_dir.resolve() / "storage"
    victim = await create_tenant(client)
    attacker = await create_tenant(client)
    v = await create_connection(client, victim, config={"base_path": "media"})
    a = await create_connection(client, attacker, config={"base_path": f"media/{victim.id}"})
    # What the old code wrote: the attacker's root nested inside the victim's.
    _put(storage / "media" / victim.id / "docs" / "mine.txt", b"victim")
    _put(storage / "media" / victim.id / attacker.id / "planted.txt", b"attacker")
    _put(storage / "stray" / "file.txt", b"nobody's")

    report = local_layout.migrate_local_storage(storage, await _roots(settings))
    assert (report.moved, report.unclaimed, report.conflicts) == (2, 1, [])
    assert (storage / victim.id / "media" / "docs" / "mine.txt").read_bytes() == b"victim"
    assert (storage / attacker.id / "media" / victim.id / "planted.txt").read_bytes() == b"attacker"
    assert (storage / local_layout.UNCLAIMED / "stray" / "file.txt").read_bytes() == b"nobody's"
    assert sorted(p.name for p in storage.iterdir()) == sorted(
        [victim.id, attacker.id, local_layout.UNCLAIMED, LAYOUT_MARKER]
    )

    listed = (await client.get(f"/v1/connections/{v['id']}/objects", headers=victim.admin.headers)).json()
    assert [i["key"] for i in listed["items"]] == ["docs/mine.txt"]
    listed = (await client.get(f"/v1/connections/{a['id']}/objects", headers=attacker.admin.headers)).json()
    assert [i["key"] for i in listed["items"]] == ["planted.txt"]

    # A second run is a no-op.
    again = local_layout.migrate_local_storage(storage, await _roots(settings))
    assert again.done_before and again.moved == 0


async def test_a_killed_migration_resumes_from_its_journal(
    client: AsyncTestClient,  # type: ignore[type-arg]
    settings: Settings,
) -> None:
    storage = settings.server.data_dir.resolve() / "storage"
    one = await create_tenant(client)
    two = await create_tenant(client)
    await create_connection(client, one, config={"base_path": two.id})
    await create_connection(client, two, config={"base_path": one.id})
    _put(storage / two.id / one.id / "a.txt", b"one's")
    _put(storage / one.id / two.id / "b.txt", b"two's")
    roots = await _roots(settings)
    moves = dict(local_layout.plan(storage, roots))
    # The two old roots swap places: each file's new place is inside the other tenant's old root.
    assert moves == {
        f"{two.id}/{one.id}/a.txt": f"{one.id}/{two.id}/a.txt",
        f"{one.id}/{two.id}/b.txt": f"{two.id}/{one.id}/b.txt",
    }
    # A first run killed after writing its journal and moving one file: planned again from scratch, the
    # moved file would now be attributed to the other tenant.
    (storage / local_layout.JOURNAL).write_text(json.dumps(list(moves.items())))
    (storage / f"{two.id}/{one.id}/a.txt").rename(storage / f"{one.id}/{two.id}/a.txt")

    report = local_layout.migrate_local_storage(storage, roots)
    assert report.conflicts == [] and report.moved == 1
    assert (storage / one.id / two.id / "a.txt").read_bytes() == b"one's"
    assert (storage / two.id / one.id / "b.txt").read_bytes() == b"two's"
    assert not (storage / local_layout.JOURNAL).exists()
    assert (storage / LAYOUT_MARKER).exists()


async def test_filegate_migrate_moves_the_old_layout_and_a_rerun_is_a_no_op(
    client: AsyncTestClient,  # type: ignore[type-arg]
    settings: Settings,
) -> None:
    import os
    import subprocess
    import sys

    storage = settings.server.data_dir.resolve() / "storage"
    tenant = await create_tenant(client)
    await create_connection(client, tenant, config={"base_path": "media"})
    _put(storage / "media" / tenant.id / "a.txt", b"a")
    assert settings.database.url and settings.database.migrate_url
    env = {
        **os.environ,
        "FILEGATE_DATA_DIR": str(settings.server.data_dir),
        "FILEGATE_DATABASE_URL": settings.database.url,
        "FILEGATE_MIGRATE_DATABASE_URL": settings.database.migrate_url,
    }

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gateway.cli", *args], env=env, capture_output=True, text=True, timeout=120
        )

    first = run("migrate")
    assert first.returncode == 0, first.stderr
    assert "1 object(s) moved" in first.stderr
    assert (storage / tenant.id / "media" / "a.txt").read_bytes() == b"a"
    again = run("storage", "migrate-local")
    assert again.returncode == 0, again.stderr
    assert "moved" not in again.stderr


async def test_a_taken_destination_is_reported_and_nothing_is_overwritten(
    client: AsyncTestClient,  # type: ignore[type-arg]
    settings: Settings,
) -> None:
    storage = settings.server.data_dir.resolve() / "storage"
    tenant = await create_tenant(client)
    await create_connection(client, tenant, config={"base_path": "media"})
    _put(storage / "media" / tenant.id / "a.txt", b"old layout")
    _put(storage / tenant.id / "media" / "a.txt", b"written since")
    report = local_layout.migrate_local_storage(storage, await _roots(settings))
    assert report.conflicts == [f"media/{tenant.id}/a.txt"] and report.moved == 0
    assert (storage / "media" / tenant.id / "a.txt").read_bytes() == b"old layout"
    assert (storage / tenant.id / "media" / "a.txt").read_bytes() == b"written since"
    assert (storage / local_layout.JOURNAL).exists() and not (storage / LAYOUT_MARKER).exists()
