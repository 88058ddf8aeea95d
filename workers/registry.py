"""A thin typed layer over arq: a task registry and a typed job context. Domain code never imports arq."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from gateway.db import Database
from gateway.settings import Settings


@dataclass(frozen=True, slots=True)
class JobContext:
    settings: Settings
    db: Database
    job_id: str | None
    attempt: int


@dataclass(frozen=True, slots=True)
class TaskSpec:
    name: str
    fn: Callable[..., Awaitable[Any]]
    max_tries: int
    timeout: int


F = TypeVar("F", bound=Callable[..., Awaitable[Any]])
TASKS: dict[str, TaskSpec] = {}


def task(*, name: str, max_tries: int = 5, timeout: int = 300) -> Callable[[F], F]:
    """Register `fn(ctx: JobContext, *args)` as an arq job called `name`."""

    def register(fn: F) -> F:
        if name in TASKS:
            raise ValueError(f"task {name} registered twice")
        TASKS[name] = TaskSpec(name=name, fn=fn, max_tries=max_tries, timeout=timeout)
        return fn

    return register


def job_context(raw: dict[str, Any]) -> JobContext:
    return JobContext(
        settings=raw["settings"], db=raw["db"], job_id=raw.get("job_id"), attempt=raw.get("job_try", 1)
    )
