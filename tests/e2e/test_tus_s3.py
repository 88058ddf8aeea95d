"""tus across two gateway processes that share nothing but PostgreSQL, Redis and an S3 quarantine."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

import httpx
import pytest

from gateway.uploads.s3_quarantine import PART_SIZE
from tests.e2e.conftest import LiveServer, make_tenant, server_env, start_server, stop_all
from tests.e2e.test_tus import _cut_patch, create, head, patch, upload_of
from tests.s3 import ACCESS_KEY, SECRET_KEY, Bucket

if TYPE_CHECKING:
    from tests.conftest import TestDatabase

pytestmark = pytest.mark.e2e
PREFIX = "e2e"


@pytest.fixture
def s3_gateways(test_db: TestDatabase, s3_bucket: Bucket, tmp_path: Path) -> Iterator[list[LiveServer]]:
    """Two gateways, each with a data dir of its own (one signing keyring): the quarantine is the bucket."""
    servers: list[LiveServer] = []
    procs: list[subprocess.Popen[bytes]] = []
    prefix: str | None = None
    try:
        for name in ("a", "b"):
            data_dir = tmp_path / name
            data_dir.mkdir()
            env = server_env(
                test_db,
                data_dir,
                FILEGATE_QUARANTINE_URL=f"s3://{s3_bucket.name}/{PREFIX}",
                FILEGATE_QUARANTINE_ENDPOINT=s3_bucket.s3.endpoint,
                AWS_ACCESS_KEY_ID=ACCESS_KEY,
                AWS_SECRET_ACCESS_KEY=SECRET_KEY,
                AWS_EC2_METADATA_DISABLED="true",
                FILEGATE_JWT_KEYRING=str(tmp_path / "keyring.json"),
            )
            # One deployment: the same Redis namespace (tus locks, the scan queue).
            prefix = prefix or env["FILEGATE_REDIS_KEY_PREFIX"]
            env["FILEGATE_REDIS_KEY_PREFIX"] = prefix
            log_path = data_dir / "gateway.log"
            procs.append(start_server(env, log_path))
            servers.append(LiveServer(f"http://127.0.0.1:{env['FILEGATE_PORT']}", log_path, env))
        yield servers
    finally:
        stop_all(procs)


def test_tus_chunks_alternate_between_gateways_on_s3(
    s3_gateways: list[LiveServer], s3_bucket: Bucket
) -> None:
    a, b = s3_gateways
    t = make_tenant(a)
    chunk = PART_SIZE // 2 + 12345
    data = os.urandom(5 * chunk)
    url = create(a, t, len(data))
    path = urlparse(url).path
    upload_id = path.rstrip("/").rsplit("/", 1)[1]
    offset = 0
    for i in range(5):
        server = (a, b)[i % 2]
        if i == 2:
            # This chunk is cut half way on one gateway; the other resumes from the database's offset.
            _cut_patch(server.url + path, t, offset, declared=chunk, sent=data[offset : offset + chunk // 2])
            offset = int(head((b, a)[i % 2].url + path, t).headers["upload-offset"])
            assert offset == 2 * chunk + chunk // 2
        end = min(len(data), (i + 1) * chunk)
        r = patch(server.url + path, t, offset, data[offset:end])
        assert r.status_code == 204, (i, r.text)
        offset = end
    u = upload_of(a, t, url)
    assert u["state"] == "quarantined"
    assert u["sha256"] == hashlib.sha256(data).hexdigest()
    # Sealed into one object under the tenant's prefix; nothing pending.
    assert s3_bucket.object_keys() == [f"{PREFIX}/{t.id}/{upload_id}"]
    assert s3_bucket.pending_uploads() == []
    for server in s3_gateways:
        assert not (Path(server.env["FILEGATE_DATA_DIR"]) / "quarantine").exists()
    # Deleting the upload (on the other gateway) removes the object.
    r = httpx.delete(f"{b.url}/v1/uploads/{upload_id}", headers={"Authorization": f"Bearer {t.access_token}"})
    assert r.status_code == 204, r.text
    assert s3_bucket.object_keys() == []
