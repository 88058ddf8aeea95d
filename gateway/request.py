"""The request class: JSON too deeply nested for the decoder is a client error, not a 500."""

from __future__ import annotations

from typing import Any

from litestar import Request

from gateway.errors import ValidationFailed


class FilegateRequest(Request[Any, Any, Any]):
    async def json(self) -> Any:
        try:
            return await super().json()
        except RecursionError:
            # msgspec refuses nesting deeper than its limit by raising RecursionError; nothing recursed of ours.
            raise ValidationFailed("JSON is nested too deeply") from None
