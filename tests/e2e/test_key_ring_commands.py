"""`filegate keys init` creates the key rings production needs, and never replaces one; the rotate commands
work in production on the rings it made, and say what to do (not a traceback) when there is none."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from connectors.credentials import LocalKeyRing
from tenants.tokens import KeyRing


def _filegate(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FILEGATE_")}
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_keys_init_creates_both_rings_in_production_private_and_without_printing_keys(tmp_path: Path) -> None:
    out = _filegate("keys", "init", FILEGATE_MODE="production", FILEGATE_DATA_DIR=str(tmp_path))
    assert out.returncode == 0, out.stderr
    jwt_ring, credentials = tmp_path / "keys" / "jwt-keyring.json", tmp_path / "keys" / "credentials.json"
    assert KeyRing.load(jwt_ring).current.kid
    assert LocalKeyRing.load(str(credentials)).versions == [1]
    assert (_mode(jwt_ring), _mode(credentials), _mode(tmp_path / "keys")) == (0o600, 0o600, 0o700)
    assert f"{jwt_ring}: created" in out.stderr and f"{credentials}: created" in out.stderr
    assert "PRIVATE KEY" not in out.stdout + out.stderr
    assert '"key"' not in out.stdout + out.stderr
    # No temporary file is left behind.
    assert sorted(p.name for p in (tmp_path / "keys").iterdir()) == ["credentials.json", "jwt-keyring.json"]


def test_keys_init_writes_the_rings_the_settings_name(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    out = _filegate(
        "keys",
        "init",
        FILEGATE_MODE="production",
        FILEGATE_DATA_DIR=str(tmp_path / "var"),
        FILEGATE_JWT_KEYRING=str(secrets / "jwt.json"),
        FILEGATE_KEYRING=str(secrets / "credentials.json"),
    )
    assert out.returncode == 0, out.stderr
    assert KeyRing.load(secrets / "jwt.json").current.kid
    assert LocalKeyRing.load(str(secrets / "credentials.json")).versions == [1]
    assert _mode(secrets) == 0o700
    assert not (tmp_path / "var" / "keys").exists()


def test_a_second_keys_init_keeps_the_rings_the_first_created(tmp_path: Path) -> None:
    env = {"FILEGATE_MODE": "production", "FILEGATE_DATA_DIR": str(tmp_path)}
    assert _filegate("keys", "init", **env).returncode == 0
    keys = tmp_path / "keys"
    before = {p.name: p.read_bytes() for p in keys.iterdir()}
    again = _filegate("keys", "init", **env)
    assert again.returncode == 0, again.stderr
    assert again.stderr.count("already there, kept") == 2
    assert {p.name: p.read_bytes() for p in keys.iterdir()} == before


def test_concurrent_keys_init_runs_leave_one_ring_that_every_run_reported_once(tmp_path: Path) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FILEGATE_")}
    env = {**clean, "FILEGATE_MODE": "production", "FILEGATE_DATA_DIR": str(tmp_path)}
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "keys", "init"],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    errs = [run.communicate(timeout=60)[1] for run in runs]
    assert [run.returncode for run in runs] == [0] * 6, errs
    # Each ring was created by exactly one run; every other run found it there and kept it.
    jwt_ring, credentials = tmp_path / "keys" / "jwt-keyring.json", tmp_path / "keys" / "credentials.json"
    assert sum(f"{jwt_ring}: created" in e for e in errs) == 1
    assert sum(f"{credentials}: created" in e for e in errs) == 1
    assert KeyRing.load(jwt_ring).current.kid
    assert LocalKeyRing.load(str(credentials)).versions == [1]
    assert sorted(p.name for p in (tmp_path / "keys").iterdir()) == ["credentials.json", "jwt-keyring.json"]


def test_keys_init_never_overwrites_a_ring_placed_by_the_operator(tmp_path: Path) -> None:
    ring = tmp_path / "credentials.json"
    LocalKeyRing.generate().with_new_key().save(ring)
    before = ring.read_bytes()
    out = _filegate("keys", "init", FILEGATE_DATA_DIR=str(tmp_path), FILEGATE_KEYRING=str(ring))
    assert out.returncode == 0, out.stderr
    assert ring.read_bytes() == before


def test_keys_init_keeps_a_broken_ring_but_says_so_and_fails(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir(mode=0o700)
    broken = tmp_path / "keys" / "jwt-keyring.json"
    broken.write_text("{not json")
    out = _filegate("keys", "init", FILEGATE_MODE="production", FILEGATE_DATA_DIR=str(tmp_path))
    assert out.returncode == 2
    assert f"FILEGATE_JWT_KEYRING {broken}: already there, kept, but it does not load" in out.stderr
    assert broken.read_text() == "{not json"
    assert "Traceback" not in out.stderr


def test_jwt_rotate_in_production_rotates_the_ring_keys_init_made(tmp_path: Path) -> None:
    env = {"FILEGATE_MODE": "production", "FILEGATE_DATA_DIR": str(tmp_path)}
    assert _filegate("keys", "init", **env).returncode == 0
    ring = tmp_path / "keys" / "jwt-keyring.json"
    first = KeyRing.load(ring).current.kid
    out = _filegate("jwt", "rotate", **env)
    assert out.returncode == 0, out.stderr
    rotated = KeyRing.load(ring)
    assert rotated.current.kid != first
    assert first in [k.kid for k in rotated.keys]


def test_jwt_rotate_in_production_without_a_ring_points_at_keys_init_and_creates_nothing(
    tmp_path: Path,
) -> None:
    out = _filegate("jwt", "rotate", FILEGATE_MODE="production", FILEGATE_DATA_DIR=str(tmp_path))
    assert out.returncode == 2
    assert "FILEGATE_JWT_KEYRING" in out.stderr and "filegate keys init" in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "keys" / "jwt-keyring.json").exists()


def test_keys_rotate_in_production_without_a_ring_points_at_keys_init(tmp_path: Path) -> None:
    for keyring in ({}, {"FILEGATE_KEYRING": str(tmp_path / "absent.json")}):
        out = _filegate(
            "keys",
            "rotate",
            FILEGATE_MODE="production",
            FILEGATE_DATA_DIR=str(tmp_path),
            FILEGATE_DATABASE_URL="postgresql+asyncpg://filegate_app@127.0.0.1:1/none",
            **keyring,
        )
        assert out.returncode == 2, out.stderr
        assert "FILEGATE_KEYRING" in out.stderr and "filegate keys init" in out.stderr
        assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
