"""Private directories: every level 0700 whatever the umask, and an older 0755 root tightened."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from connectors.private_files import private_dirs, private_root


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_every_level_below_the_root_is_0700_and_an_old_root_is_tightened(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        old = tmp_path / "data" / "quarantine"
        old.mkdir(parents=True)  # what an older version left: 0755
        assert mode(old) == 0o755
        private_root(old)
        assert mode(old) == 0o700
        assert mode(tmp_path / "data") == 0o755  # the data dir is shared with embedded servers: left alone
        private_dirs(old, old / "a" / "b" / "c")
        assert [mode(old / p) for p in ("a", "a/b", "a/b/c")] == [0o700] * 3
        fresh = tmp_path / "other" / "storage"
        private_dirs(fresh, fresh / "t" / "x")
        assert [mode(fresh / p) for p in ("", "t", "t/x")] == [0o700] * 3
    finally:
        os.umask(previous)
