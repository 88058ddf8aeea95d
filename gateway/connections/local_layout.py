"""Moving local-connector objects from the old layout to the tenant-first one: `filegate storage migrate-local`.

Before, a local connection's objects lived in `<storage>/<base_path>/<tenant_id>/`, so a tenant whose base
path named another tenant's id (`media/<other id>`) had its root inside the other tenant's tree. Now they
live in `<storage>/<tenant_id>/<base_path>/` (`connectors/local.py`).

The move is planned once, from the directory as it was, and the plan is written to a journal before the
first file moves; a rerun after a kill follows the same journal, so a file that has already moved is never
planned again from its new place (which an old root of another tenant may contain). Each file is attributed
to the deepest old root that holds it (a tenant's root nested inside another's belongs to the nested one),
renamed on its own (same file system: atomic), and never over an existing file: such a conflict is
reported and left for the operator, and the journal stays until it is resolved. Files under no current
connection's old root stay where they are when they lie in a connection's new root (written by this
version before the step ran), and otherwise move to `<storage>/.unclaimed/`, out of every tenant's reach.
When every file is where it belongs, empty directories are removed and the layout marker is written;
from then on the step is a no-op.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from connectors.base import InvalidKey
from connectors.local import LAYOUT_MARKER
from connectors.models import ConnectionRepository
from connectors.paths import normalize_base
from connectors.private_files import FILE_MODE, private_dirs, private_root
from gateway.db import Database, tenant_ids

JOURNAL = ".layout-migration.json"
UNCLAIMED = ".unclaimed"


@dataclass(frozen=True, slots=True)
class LocalRoot:
    tenant_id: uuid.UUID
    base: str  # normalized: "" or "a/b/"

    @property
    def old(self) -> str:
        return f"{self.base}{self.tenant_id}"

    @property
    def new(self) -> str:
        return f"{self.tenant_id}/{self.base}".rstrip("/")


@dataclass(slots=True)
class LayoutReport:
    done_before: bool = False
    moved: int = 0
    unclaimed: int = 0
    conflicts: list[str] = field(default_factory=list)
    skipped_connections: int = 0  # base paths no longer valid: their files count as unclaimed


async def local_roots(db: Database) -> tuple[list[LocalRoot], int]:
    """Every local connection's (tenant, base path), and how many had a base path that is not valid."""
    roots: set[LocalRoot] = set()
    invalid = 0
    for tenant_id in await tenant_ids(db):
        async with db.tenant(tenant_id) as session:
            connections = await ConnectionRepository(session, tenant_id).of_kind("local")
        for connection in connections:
            try:
                roots.add(LocalRoot(tenant_id, normalize_base(str(connection.config.get("base_path", "")))))
            except InvalidKey:
                invalid += 1
    return sorted(roots, key=lambda r: (r.tenant_id, r.base)), invalid


def plan(storage: Path, roots: list[LocalRoot]) -> list[tuple[str, str]]:
    """(from, to) for every file to move, both relative to `storage`."""
    deepest_first = sorted(roots, key=lambda r: r.old.count("/"), reverse=True)
    moves: list[tuple[str, str]] = []
    for dirpath, dirnames, filenames in os.walk(storage):
        here = Path(dirpath)
        if here == storage:
            dirnames[:] = [d for d in dirnames if d != UNCLAIMED]
        for name in filenames:
            path = here / name
            if here == storage and name in (LAYOUT_MARKER, JOURNAL):
                continue
            rel = path.relative_to(storage).as_posix()
            owner = next((r for r in deepest_first if rel.startswith(r.old + "/")), None)
            if owner is None:
                if not any(rel.startswith(r.new + "/") for r in roots):
                    moves.append((rel, f"{UNCLAIMED}/{rel}"))  # else: already where the new layout has it
            elif owner.old != owner.new:
                moves.append((rel, owner.new + rel[len(owner.old) :]))
    return moves


def needed(storage: Path) -> bool:
    """Whether `storage` may still hold objects in the old layout."""
    return storage.exists() and not (storage / LAYOUT_MARKER).exists()


def migrate_local_storage(storage: Path, roots: list[LocalRoot], *, invalid: int = 0) -> LayoutReport:
    """Move what the old layout left in `storage`; idempotent, resumable. Nothing to do without `storage`."""
    report = LayoutReport(skipped_connections=invalid)
    if not needed(storage):
        report.done_before = True
        return report
    private_root(storage)
    journal = storage / JOURNAL
    if journal.exists():
        moves = [(str(a), str(b)) for a, b in json.loads(journal.read_text())]
    else:
        moves = plan(storage, roots)
        _write_atomically(journal, json.dumps(moves).encode())
    for source_rel, target_rel in moves:
        source, target = storage / source_rel, storage / target_rel
        if not os.path.lexists(source):
            continue  # moved by an earlier run
        if os.path.lexists(target):
            report.conflicts.append(source_rel)
            continue
        private_dirs(storage, target.parent)
        os.rename(source, target)
        if target_rel.startswith(UNCLAIMED + "/"):
            report.unclaimed += 1
        else:
            report.moved += 1
    if report.conflicts:
        return report
    _remove_empty_directories(storage)
    (storage / LAYOUT_MARKER).touch(mode=FILE_MODE, exist_ok=True)
    journal.unlink()
    return report


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _remove_empty_directories(storage: Path) -> None:
    for dirpath, _, _ in os.walk(storage, topdown=False):
        if Path(dirpath) != storage:
            with contextlib.suppress(OSError):  # not empty: holds objects
                os.rmdir(dirpath)
