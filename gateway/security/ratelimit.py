"""Fixed-window counters (throttles, not decisions), held in Redis so every replica shares them."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from redis.asyncio import Redis

from gateway.errors import RateLimited


@dataclass(frozen=True, slots=True)
class Window:
    limit: int
    remaining: int
    reset: int  # seconds until the window resets

    def headers(self) -> dict[str, str]:
        return {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(max(self.remaining, 0)),
            "RateLimit-Reset": str(self.reset),
        }


def subject(*parts: str) -> str:
    """A key part that never puts an email or address into Redis in clear."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


class RateLimiter:
    def __init__(self, redis: Redis, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix

    def _window(self, bucket: str, key: str, period: int) -> tuple[str, int]:
        """The Redis key of the current window and the seconds until it resets."""
        now = int(time.time())
        window = now - now % period
        return f"{self._prefix}rl:{bucket}:{key}:{window}", window + period - now

    async def hit(self, bucket: str, key: str, *, limit: int, period: int = 60) -> Window:
        """Count one hit; raise 429 `rate_limited` (with Retry-After) over the limit."""
        rkey, reset = self._window(bucket, key, period)
        pipe = self._redis.pipeline(transaction=True)
        pipe.incr(rkey)
        pipe.expire(rkey, period + 1)
        count = int((await pipe.execute())[0])
        state = Window(limit=limit, remaining=limit - count, reset=reset)
        if count > limit:
            raise _limited(state)
        return state

    async def check(self, bucket: str, key: str, *, limit: int, period: int = 60) -> None:
        """Raise 429 when the window already holds `limit` hits; counts nothing (for counting failures only:
        a throttled caller is refused before its attempt is even looked at)."""
        rkey, reset = self._window(bucket, key, period)
        count = int(await self._redis.get(rkey) or 0)
        if count >= limit:
            raise _limited(Window(limit=limit, remaining=0, reset=reset))


def _limited(state: Window) -> RateLimited:
    return RateLimited(
        "too many requests; retry later", headers={**state.headers(), "Retry-After": str(state.reset)}
    )
