"""A thin typed layer over arq: a task registry and a typed job context. Domain code never imports arq."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from gateway.connections.service import ConnectionService
from gateway.db import Database
from gateway.jobs import JobQueue
from gateway.policy.service import PolicyService
from gateway.settings import Settings
from gateway.uploads.delivery import DeliveryPipeline
from gateway.uploads.pipeline import ScanPipeline
from gateway.uploads.quarantine import QuarantineStore


@dataclass(frozen=True, slots=True)
class Services:
    """Built once in the worker's on_startup, shared by every job."""

    settings: Settings
    db: Database
    store: QuarantineStore
    queue: JobQueue
    policy: PolicyService
    pipeline: ScanPipeline
    delivery: DeliveryPipeline
    connections: ConnectionService


@dataclass(frozen=True, slots=True)
class JobContext:
    services: Services
    job_id: str | None
    attempt: int

    @property
    def settings(self) -> Settings:
        return self.services.settings

    @property
    def db(self) -> Database:
        return self.services.db


@dataclass(frozen=True, slots=True)
class TaskSpec:
    name: str
    fn: Callable[..., Awaitable[Any]]
    max_tries: Callable[[Settings], int]
    timeout: Callable[[Settings], int]


F = TypeVar("F", bound=Callable[..., Awaitable[Any]])
TASKS: dict[str, TaskSpec] = {}


def task(
    *,
    name: str,
    max_tries: int | Callable[[Settings], int] = 5,
    timeout: int | Callable[[Settings], int] = 300,
) -> Callable[[F], F]:
    """Register `fn(ctx: JobContext, *args)` as an arq job called `name`; limits may depend on settings."""

    def register(fn: F) -> F:
        if name in TASKS:
            raise ValueError(f"task {name} registered twice")
        TASKS[name] = TaskSpec(
            name=name, fn=fn, max_tries=_per_settings(max_tries), timeout=_per_settings(timeout)
        )
        return fn

    return register


def _per_settings(value: int | Callable[[Settings], int]) -> Callable[[Settings], int]:
    if callable(value):
        return value

    def constant(_: Settings) -> int:
        return value

    return constant


def job_context(raw: dict[str, Any]) -> JobContext:
    return JobContext(services=raw["services"], job_id=raw.get("job_id"), attempt=raw.get("job_try", 1))
