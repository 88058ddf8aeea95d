"""What another local user of the machine can reach: the attacker of the embedded servers' tests."""

from __future__ import annotations

import os
import pwd
import socket
import stat
from pathlib import Path

import psutil
import pytest


def tcp_listeners(pid: int) -> list[str]:
    """The TCP addresses the process `pid` listens on, as host:port."""
    return [
        f"{c.laddr.ip}:{c.laddr.port}"
        for c in psutil.Process(pid).net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN
    ]


def connects_as(path: Path, user: str = "nobody") -> bool:
    """Whether an unprivileged user (default `nobody`) can open the unix socket at `path` (root only)."""
    if os.geteuid() != 0:
        pytest.skip("only root can act as another local user")
    other = pwd.getpwnam(user)
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through its exit code
        code = 1
        try:
            os.setgroups([])
            os.setgid(other.pw_gid)
            os.setuid(other.pw_uid)
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(3)
                s.connect(str(path))
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(child, 0)
    return os.waitstatus_to_exitcode(status) == 0


def loose_modes(root: Path) -> list[str]:
    """Everything below `root` that its owner's group or other users may read, write or enter."""
    found = []
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(directory) / name
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode):
                continue  # a link's own mode means nothing; its target is checked where it lives
            if stat.S_ISSOCK(mode):
                continue  # reached only through its directory, which is checked (PostgreSQL's is 0777)
            if mode & 0o077:
                found.append(f"{stat.filemode(mode)} {path}")
    return found
