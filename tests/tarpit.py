"""A "tarpit": a TCP port on 127.0.0.1 that accepts connections and never says a word, as a tenant's
silent or hostile service would (for deadline and isolation tests)."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import pytest


@pytest.fixture
def tarpit() -> Iterator[int]:
    """A port that accepts connections and never answers (nor closes them) until the test ends."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(512)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError, OSError):
                held.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join(timeout=2)
        for s in held:
            s.close()
        listener.close()
