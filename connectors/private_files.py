"""Directories the gateway keeps files in (quarantine, local storage, scan scratch, keys) are private: 0700.

`Path.mkdir(mode=..., parents=True)` applies the mode only to the last directory; the parents it makes get
the umask's default (usually 0755), which lets every local user list tenant ids and upload ids. Here every
directory below a store's root is made 0700 one level at a time, and a root that already exists with
group or other access (an install from before) is tightened when this process owns it. Files are 0600 where
they are created.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_root(root: Path) -> Path:
    """`root` exists and is 0700 (its parents are left as they are: a data dir may be shared with other
    services, such as an embedded database or clamd dropping to its own user)."""
    root.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.mkdir(root, DIR_MODE)
    st = os.stat(root)
    if st.st_mode & 0o077 and st.st_uid == os.geteuid():
        with contextlib.suppress(OSError):  # a read-only mount: left to the operator
            os.chmod(root, DIR_MODE)
    return root


def private_dirs(root: Path, directory: Path) -> None:
    """Make `directory` (inside `root`) and every missing directory between them 0700; `root` too if absent."""
    if not root.exists():
        private_root(root)
    relative = directory.relative_to(root)
    current = root
    for part in relative.parts:
        current = current / part
        with contextlib.suppress(FileExistsError):
            os.mkdir(current, DIR_MODE)


def create_private_file(path: Path, content: str) -> bool:
    """Write `content` to `path` (0600) only if nothing is there; False, and nothing touched, if something is.

    The content goes to a private temporary file first and is then hard-linked to `path`: the link fails
    if `path` exists, so of two concurrent writers exactly one wins, and no reader ever sees half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # mode 0600
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(content)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        os.unlink(tmp)
