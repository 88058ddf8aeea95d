"""A do-nothing upload receiver: the peer that tells what loopback HTTP + disk allow on this machine.

Any request's body is streamed to a new file under $RECEIVER_DIR with SHA-256, written in 1 MiB blocks
from a thread and fsynced once at the end (as the gateway's quarantine does); the answer is
`{"size": N, "sha256": "..."}`. No routing, no auth, no database.

    RECEIVER_DIR=/tmp/x granian --interface asgi --loop uvloop bench.receiver:app
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any

BLOCK = 1024 * 1024


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            if (await receive())["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    path = Path(os.environ.get("RECEIVER_DIR", ".")) / uuid.uuid4().hex
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    hasher, size, buffer = hashlib.sha256(), 0, bytearray()
    try:
        more = True
        while more:
            message = await receive()
            chunk, more = message.get("body", b""), message.get("more_body", False)
            size += len(chunk)
            hasher.update(chunk)
            buffer += chunk
            if len(buffer) >= BLOCK or not more:
                await asyncio.to_thread(_write_all, fd, bytes(buffer))
                buffer.clear()
        await asyncio.to_thread(os.fsync, fd)
    finally:
        os.close(fd)
    body = json.dumps({"size": size, "sha256": hasher.hexdigest()}).encode()
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]}
    )
    await send({"type": "http.response.body", "body": body})
