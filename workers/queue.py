"""The arq implementation of `gateway.jobs.JobQueue`."""

from __future__ import annotations

from datetime import timedelta

from arq.connections import ArqRedis

from gateway.settings import Settings
from workers import codec


class ArqQueue:
    def __init__(self, pool: ArqRedis, queue_name: str) -> None:
        self._pool = pool
        self._queue_name = queue_name

    @classmethod
    async def connect(cls, settings: Settings) -> ArqQueue:
        """A queue whose connections open on first use: a gateway starts (and says it is not ready)
        even while Redis is down, and uploads made then wait in the outbox for the reconciler."""
        pool = ArqRedis.from_url(settings.redis.url or "", socket_timeout=5, socket_connect_timeout=5)
        # from_url hands its keyword arguments to the connection pool, so the codec is set as arq's
        # create_pool sets it.
        pool.job_serializer = codec.encode
        pool.job_deserializer = codec.decode
        return cls(pool, queue_name(settings))

    async def enqueue(self, name: str, *args: str, job_id: str, defer_by: float | None = None) -> bool:
        job = await self._pool.enqueue_job(
            name,
            *args,
            _job_id=job_id,
            _queue_name=self._queue_name,
            _defer_by=timedelta(seconds=defer_by) if defer_by else None,
        )
        return job is not None

    async def close(self) -> None:
        await self._pool.aclose()


def queue_name(settings: Settings) -> str:
    return f"{settings.redis.key_prefix}queue"
