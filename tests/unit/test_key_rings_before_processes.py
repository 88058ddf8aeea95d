"""`filegate serve` and `filegate worker` create missing key rings before any process that uses them starts.

granian forks several gateway processes; each one used to generate its own ring on a fresh data directory
(about one start in ten here), and then refused the tokens and sealed records of the others.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from gateway import cli


def _env(data_dir: Path) -> dict[str, str]:
    return {
        "FILEGATE_DATA_DIR": str(data_dir),
        "FILEGATE_DATABASE_URL": "postgresql+asyncpg://filegate_app@127.0.0.1:1/none",
        "FILEGATE_REDIS_URL": "redis://127.0.0.1:1/0",
    }


def _rings(data_dir: Path) -> list[str]:
    return sorted(p.name for p in (data_dir / "keys").glob("*.json")) if (data_dir / "keys").exists() else []


def test_serve_creates_the_key_rings_before_granian_forks_its_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[list[str]] = []
    monkeypatch.setattr(cli, "_serve", lambda settings: seen.append(_rings(tmp_path)))
    monkeypatch.setattr("gateway.logging.configure_logging", lambda *args, **kwargs: None)
    result = CliRunner().invoke(cli.main, ["serve"], env=_env(tmp_path))
    assert result.exit_code == 0, result.output
    assert seen == [["credentials.json", "jwt-keyring.json"]]


def test_worker_creates_the_key_rings_before_it_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import arq.worker

    seen: list[list[str]] = []

    def run_worker(settings: Any) -> None:
        seen.append(_rings(tmp_path))

    monkeypatch.setattr(arq.worker, "run_worker", run_worker)
    # The command configures logging for the process; in a test process that would outlive the test (structlog
    # caches its loggers) and blind every later test that captures log events.
    monkeypatch.setattr("gateway.logging.configure_logging", lambda *args, **kwargs: None)
    monkeypatch.setattr("workers.settings.worker_settings", lambda settings: {})
    result = CliRunner().invoke(cli.main, ["worker"], env=_env(tmp_path))
    assert result.exit_code == 0, result.output
    assert seen == [["credentials.json", "jwt-keyring.json"]]
