"""The request class and the edge check every routed request passes.

- The body arrives with an idle timeout and a minimum average rate: a client that stops sending, or
  trickles, mid-body is cut with 408 instead of holding a connection (and whatever the handler holds).
- A client that goes away mid-body is a client error (400 `client_disconnected`), not a 500.
- JSON nested too deeply for the decoder is a client error.
- The path and the query string decode as UTF-8 and hold no control characters: PostgreSQL refuses NUL
  in text, and no parameter of this API has a use for the others. (Bodies are checked by their types,
  see `tenants.inputs`.)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from typing import Any
from urllib.parse import unquote_to_bytes

from litestar import Request
from litestar.exceptions import InternalServerException

from gateway.errors import BodyTimeout, ClientDisconnected, ValidationFailed
from tenants.inputs import is_line


class FilegateRequest(Request[Any, Any, Any]):
    async def json(self) -> Any:
        try:
            return await super().json()
        except RecursionError:
            # msgspec refuses nesting deeper than its limit by raising RecursionError; nothing recursed of ours.
            raise ValidationFailed("JSON is nested too deeply") from None

    async def stream(self) -> AsyncGenerator[bytes, None]:
        server = self.app.state.settings.server
        idle, min_rate = server.body_idle_timeout, server.body_min_rate
        chunks = super().stream()
        started, received = time.monotonic(), 0
        try:
            while True:
                try:
                    async with asyncio.timeout(idle):
                        chunk = await anext(chunks)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    raise BodyTimeout(f"no part of the request body arrived for {idle} s") from None
                except InternalServerException as exc:
                    if "disconnected" not in str(exc.detail):
                        raise
                    raise ClientDisconnected() from None
                received += len(chunk)
                # A trickle (a byte now and then) never trips the idle timeout: past a grace period of
                # the same length, the body must also keep an average rate.
                elapsed = time.monotonic() - started
                if min_rate and elapsed > idle and received < min_rate * (elapsed - idle):
                    raise BodyTimeout(f"the request body arrives slower than {min_rate} bytes/s")
                yield chunk
        finally:
            await chunks.aclose()


async def refuse_unreadable_text(request: Request[Any, Any, Any]) -> None:
    """before_request hook: a path or query string with control characters or broken UTF-8 is a 400."""
    scope = request.scope
    raw_path = scope.get("raw_path")
    path = _decoded(raw_path) if isinstance(raw_path, bytes | bytearray) else scope.get("path", "")
    if path is None or not is_line(path):
        raise ValidationFailed("the path must be UTF-8 without control characters")
    query = scope.get("query_string", b"")
    if query:
        text = _decoded(query.replace(b"+", b" "))
        if text is None or not is_line(text):
            raise ValidationFailed("query parameters must be UTF-8 without control characters")


def _decoded(raw: bytes) -> str | None:
    try:
        return unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        return None
