"""Lose a test's Redis keys, as a restart without persistence, a failover or an eviction does.

The suite shares one Redis server: only the keys under the test's own prefix are deleted, never the
whole database.
"""

from __future__ import annotations

from collections.abc import Callable

from redis.asyncio import Redis

from tests.conftest import REDIS


async def lose_redis_keys(prefix: str, *, spare: Callable[[str], bool] = lambda _: False) -> int:
    """Delete every key under `prefix` except those `spare` keeps; the number deleted."""
    redis = Redis.from_url(REDIS, decode_responses=True)
    try:
        doomed = [key async for key in redis.scan_iter(match=f"{prefix}*", count=1000) if not spare(key)]
        if doomed:
            await redis.delete(*doomed)
        return len(doomed)
    finally:
        await redis.aclose()
