"""A private S3 server (SeaweedFS, scripts/s3.sh) per xdist worker, and a fresh bucket per test.

The server starts on first use (~3 s) under /tmp on a free port and stops at the end of the session.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from tests.clamd import free_port

ROOT = Path(__file__).resolve().parents[1]
S3_SH = ROOT / "scripts" / "s3.sh"
ACCESS_KEY = "filegate-test"
SECRET_KEY = "filegate-test-secret-0123456789"
REGION = "us-east-1"


@dataclass(frozen=True)
class RunningS3:
    dir: Path
    port: int

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self) -> Any:
        """A client with the test identity (the gateway's own client takes boto3's default chain)."""
        return boto3.session.Session(
            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, region_name=REGION
        ).client(
            "s3",
            endpoint_url=self.endpoint,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 5, "mode": "standard"}),
        )


@dataclass(frozen=True)
class Bucket:
    s3: RunningS3
    name: str
    client: Any

    def object_keys(self, prefix: str = "") -> list[str]:
        keys: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.name, Prefix=prefix):
            keys += [item["Key"] for item in page.get("Contents") or []]
        return keys

    def pending_uploads(self) -> list[dict[str, Any]]:
        return list(self.client.list_multipart_uploads(Bucket=self.name).get("Uploads") or [])


def s3_sh(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(S3_SH), *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="session")
def s3_server(worker_id: str) -> Iterator[RunningS3]:
    """This worker's SeaweedFS with one identity (ACCESS_KEY / SECRET_KEY)."""
    directory = Path(tempfile.mkdtemp(prefix=f"filegate-s3-{worker_id}-"))
    env = {"S3_ACCESS_KEY": ACCESS_KEY, "S3_SECRET_KEY": SECRET_KEY}
    output = ""
    running: RunningS3 | None = None
    for _ in range(3):  # another process may take the free port first
        port = free_port()
        result = s3_sh("start", str(directory), str(port), env=env)
        if result.returncode == 0:
            running = RunningS3(directory, port)
            break
        output = result.stdout + result.stderr
        s3_sh("stop", str(directory))
    if running is None:
        shutil.rmtree(directory, ignore_errors=True)
        pytest.fail(f"scripts/s3.sh start failed:\n{output}")
    yield running
    result = s3_sh("stop", str(directory))
    assert result.returncode == 0, result.stdout + result.stderr
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def s3_bucket(s3_server: RunningS3) -> Iterator[Bucket]:
    """A new, empty bucket for one test; removed (with what is left in it) afterwards."""
    client = s3_server.client()
    name = f"fg-{uuid.uuid4().hex[:20]}"
    for attempt in range(20):  # right after start the filer may still be settling
        try:
            client.create_bucket(Bucket=name)
            break
        except Exception:
            if attempt == 19:
                raise
            time.sleep(0.2)
    bucket = Bucket(s3_server, name, client)
    yield bucket
    for up in bucket.pending_uploads():
        client.abort_multipart_upload(Bucket=name, Key=up["Key"], UploadId=up["UploadId"])
    for key in bucket.object_keys():
        client.delete_object(Bucket=name, Key=key)
    client.delete_bucket(Bucket=name)


@pytest.fixture
def s3_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test server's credentials where boto3's default chain finds them (the gateway and worker
    build their clients from it, as in production)."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
