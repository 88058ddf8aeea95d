"""arq worker settings built from Filegate settings: `filegate worker` runs them."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from arq import cron, func
from arq.connections import RedisSettings
from arq.typing import WorkerCoroutine

from gateway.audit import AuditRecorder
from gateway.connections.wiring import connection_services
from gateway.db import Database, create_engine
from gateway.keys import load_credentials, load_keyring
from gateway.policy.service import PolicyService
from gateway.settings import Settings
from gateway.uploads.pipeline import ScanPipeline
from gateway.uploads.quarantine import quarantine_store
from scanning.clamav import ClamdClient
from workers import codec, deliver, maintenance, scan  # noqa: F401  (register their tasks)
from workers.queue import ArqQueue, queue_name
from workers.registry import TASKS, Services, TaskSpec, job_context


def _wrap(spec: TaskSpec, settings: Settings) -> Any:
    async def run(raw_ctx: dict[str, Any], *args: Any) -> Any:
        return await spec.fn(job_context(raw_ctx), *args)

    run.__name__ = spec.name
    coroutine = cast(WorkerCoroutine, run)
    # keep_result=0: a finished job leaves nothing behind, so the reconciler may queue its id again.
    return func(
        coroutine,
        name=spec.name,
        max_tries=spec.max_tries(settings),
        # arq keeps a job "in progress" for the LONGEST timeout of all functions + 10 s, and only then lets
        # another worker retry the job of a worker that was killed: capping every timeout bounds recovery.
        timeout=min(spec.timeout(settings), settings.scanning.job_timeout),
        keep_result=0,
    )


def build_services(settings: Settings, redis: Any) -> Services:
    db = Database(create_engine(settings))
    audit = AuditRecorder(db)
    policy = PolicyService(audit=audit)
    store = quarantine_store(settings)
    clamd = ClamdClient(settings.scanning.clamd_url) if settings.scanning.clamd_url else None
    wired = connection_services(
        settings,
        db=db,
        audit=audit,
        store=store,
        ring=load_keyring(settings),
        credentials=load_credentials(settings),
    )
    return Services(
        settings=settings,
        db=db,
        store=store,
        queue=ArqQueue(redis, queue_name(settings)),
        policy=policy,
        pipeline=ScanPipeline(
            db=db,
            store=store,
            clamd=clamd,
            audit=audit,
            policy=policy,
            settings=settings.scanning,
            scratch_dir=settings.scan_scratch,
        ),
        delivery=wired.delivery,
        connections=wired.connections,
    )


def worker_settings(settings: Settings) -> dict[str, Any]:
    """The arq settings mapping for `arq.worker.run_worker` (or `Worker(**...)` in tests)."""

    async def on_startup(ctx: dict[str, Any]) -> None:
        services = build_services(settings, ctx["redis"])
        services.connections.remote.install(asyncio.get_running_loop())
        ctx["services"] = services

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        await ctx["services"].db.dispose()

    functions = {spec.name: _wrap(spec, settings) for spec in TASKS.values()}
    every = settings.scanning.reconcile_every
    return {
        "functions": list(functions.values()),
        "cron_jobs": [
            cron(
                functions["purge_expired_refresh_tokens"].coroutine,
                name="cron:purge_refresh_tokens",
                minute={17},
                run_at_startup=False,
            ),
            cron(
                functions["purge_stale_lockouts"].coroutine,
                name="cron:purge_stale_lockouts",
                minute={47},
                run_at_startup=False,
            ),
            cron(
                functions["reconcile_uploads"].coroutine,
                name="cron:reconcile_uploads",
                second=set(range(0, 60, every)) if every < 60 else {0},
                run_at_startup=True,
                unique=True,
            ),
            cron(
                functions["refresh_connector_tokens"].coroutine,
                name="cron:refresh_connector_tokens",
                minute={23},
                run_at_startup=False,
            ),
            cron(
                functions["upload_retention"].coroutine,
                name="cron:upload_retention",
                minute={41},
                run_at_startup=False,
            ),
        ],
        "redis_settings": RedisSettings.from_dsn(settings.redis.url or ""),
        # Never arq's default (pickle): bytes read from Redis must not be able to run code in the worker.
        "job_serializer": codec.encode,
        "job_deserializer": codec.decode,
        "on_startup": on_startup,
        "on_shutdown": on_shutdown,
        "queue_name": queue_name(settings),
        "health_check_key": f"{settings.redis.key_prefix}worker:health",
        "handle_signals": True,
        # Also the timeout of the cron jobs, which would otherwise stretch the in-progress lease (see _wrap).
        "job_timeout": settings.scanning.job_timeout,
        # Poll often: arq's 0.5 s default alone puts p50 "last byte → clean" for 1 MB files near 3 s
        # (bench/uploads.py); 50 ms costs ~20 tiny Redis queries a second per idle worker.
        "poll_delay": 0.05,
        "max_jobs": 8,
    }
