"""arq worker settings built from Filegate settings: `filegate worker` runs them."""

from __future__ import annotations

from typing import Any, cast

from arq import cron, func
from arq.connections import RedisSettings
from arq.typing import WorkerCoroutine

from gateway.db import Database, create_engine
from gateway.settings import Settings
from workers import maintenance  # noqa: F401  (registers its tasks)
from workers.registry import TASKS, TaskSpec, job_context


def _wrap(spec: TaskSpec) -> Any:
    async def run(raw_ctx: dict[str, Any], *args: Any) -> Any:
        return await spec.fn(job_context(raw_ctx), *args)

    run.__name__ = spec.name
    coroutine = cast(WorkerCoroutine, run)
    return func(coroutine, name=spec.name, max_tries=spec.max_tries, timeout=spec.timeout)


def worker_settings(settings: Settings) -> dict[str, Any]:
    """The arq settings mapping for `arq.worker.run_worker`."""

    async def on_startup(ctx: dict[str, Any]) -> None:
        ctx["settings"] = settings
        ctx["db"] = Database(create_engine(settings))

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        await ctx["db"].dispose()

    functions = [_wrap(spec) for spec in TASKS.values()]
    purge = next(f for f in functions if f.name == "purge_expired_refresh_tokens")
    return {
        "functions": functions,
        "cron_jobs": [
            cron(purge.coroutine, name="cron:purge_expired_refresh_tokens", minute={17}, run_at_startup=False)
        ],
        "redis_settings": RedisSettings.from_dsn(settings.redis.url or ""),
        "on_startup": on_startup,
        "on_shutdown": on_shutdown,
        "queue_name": f"{settings.redis.key_prefix}queue",
        "health_check_key": f"{settings.redis.key_prefix}worker:health",
        "handle_signals": True,
    }
