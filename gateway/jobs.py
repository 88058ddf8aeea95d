"""What the gateway needs of a job queue; `workers.queue` implements it on arq."""

from __future__ import annotations

from typing import Protocol

SCAN_UPLOAD = "scan_upload"
DELIVER_UPLOAD = "deliver_upload"
_JOB_ID_PREFIX = {SCAN_UPLOAD: "scan", DELIVER_UPLOAD: "deliver"}


def job_id(name: str, upload_id: object) -> str:
    """One job of a kind per upload at a time: arq refuses a second job with the same id while one exists."""
    return f"{_JOB_ID_PREFIX.get(name, name)}:{upload_id}"


def scan_job_id(upload_id: object) -> str:
    return job_id(SCAN_UPLOAD, upload_id)


class JobQueue(Protocol):
    async def enqueue(self, name: str, *args: str, job_id: str, defer_by: float | None = None) -> bool:
        """Queue `name(*args)` unless a job with `job_id` is already queued or running; True when queued."""
        ...
