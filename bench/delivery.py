"""Delivery benchmark: a 1 GiB clean upload delivered to S3 (SeaweedFS) and Azure Blob (Azurite) through
Filegate's delivery pipeline, next to a direct upload of the same file with boto3 / azure-storage-blob in
the same run (each library's defaults, as an integrator would call it), and credential decrypts per second.

"Through Filegate" is exactly what the worker's `deliver_upload` job runs: `DeliveryPipeline.run` opens
the connection (secrets decrypted), streams the upload from the local quarantine through the connector,
and records the outcome (compare-and-set, audit event). Servers: scripts/s3.sh and scripts/azurite.sh,
started here on free ports and stopped at the end; the machine's PostgreSQL and Redis. MB = 10^6 bytes.

    .venv/bin/python bench/delivery.py [--size-mib 1024] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import boto3
from botocore.config import Config

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.clamd_stream import free_port  # noqa: E402
from bench.identity import pg_url  # noqa: E402

DB = "filegate_bench_delivery"
REDIS = os.environ.get("FILEGATE_TEST_REDIS", "redis://127.0.0.1:6379/0")
OPERATOR = "bench-operator-token"
PASSWORD = "bench-Passphrase-0451"
S3_KEY, S3_SECRET = "filegate-bench", "filegate-bench-secret-0123456789"
AZ_ACCOUNT = "devstoreaccount1"
AZ_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
MIB = 1024 * 1024


def sh(*args: str, env: dict[str, str] | None = None) -> None:
    subprocess.run(args, check=True, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL)


async def sql(*statements: str, db: str = "postgres") -> None:
    conn = await asyncpg.connect(pg_url(db).replace("+asyncpg", ""))
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


def timed(label: str, runs: int, size: int, fn: Callable[[], Awaitable[Any]]) -> float:
    rates = []
    for _ in range(runs):
        t0 = time.perf_counter()
        asyncio.run(fn())
        elapsed = time.perf_counter() - t0
        rates.append(size / elapsed / 1e6)
    median = statistics.median(rates)
    print(f"  {label:<44} median {median:7.1f} MB/s   runs {', '.join(f'{r:.1f}' for r in rates)}")
    return median


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    size = args.size_mib * MIB

    work = Path(tempfile.mkdtemp(prefix="fg-bench-delivery-"))
    s3_port, az_port = free_port(), free_port()
    print(f"starting SeaweedFS on {s3_port} and Azurite on {az_port} ...")
    sh(
        str(ROOT / "scripts/s3.sh"),
        "start",
        str(work / "s3"),
        str(s3_port),
        env={"S3_ACCESS_KEY": S3_KEY, "S3_SECRET_KEY": S3_SECRET},
    )
    sh(str(ROOT / "scripts/azurite.sh"), "start", str(work / "azurite"), str(az_port))
    asyncio.run(sql(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)', f'CREATE DATABASE "{DB}"'))
    try:
        from gateway.migrate import upgrade

        upgrade(pg_url(DB), "filegate_app")
        run(work, size, args.runs, s3_port, az_port)
    finally:
        sh(str(ROOT / "scripts/s3.sh"), "stop", str(work / "s3"))
        sh(str(ROOT / "scripts/azurite.sh"), "stop", str(work / "azurite"))
        asyncio.run(sql(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)'))
        subprocess.run(["rm", "-rf", str(work)], check=False)


def run(work: Path, size: int, runs: int, s3_port: int, az_port: int) -> None:
    from litestar.testing import TestClient

    from gateway.app import create_app
    from gateway.settings import Settings

    s3_url = f"http://127.0.0.1:{s3_port}"
    az_url = f"http://127.0.0.1:{az_port}/{AZ_ACCOUNT}"
    settings = Settings.from_env(
        {
            "FILEGATE_DATABASE_URL": pg_url(DB, "filegate_app"),
            "FILEGATE_REDIS_URL": REDIS,
            "FILEGATE_REDIS_KEY_PREFIX": f"fgbench:{uuid.uuid4().hex}:",
            "FILEGATE_DATA_DIR": str(work / "var"),
            "FILEGATE_OPERATOR_TOKEN": OPERATOR,
            "FILEGATE_CONNECTOR_ALLOW_PRIVATE": "true",
        }
    )
    s3 = boto3.session.Session(
        aws_access_key_id=S3_KEY, aws_secret_access_key=S3_SECRET, region_name="us-east-1"
    ).client("s3", endpoint_url=s3_url, config=Config(s3={"addressing_style": "path"}))
    s3.create_bucket(Bucket="bench")
    from azure.storage.blob import BlobServiceClient

    azure = BlobServiceClient(az_url, credential={"account_name": AZ_ACCOUNT, "account_key": AZ_KEY})
    azure.create_container("bench")

    with TestClient(app=create_app(settings)) as client:
        slug = f"bench-{uuid.uuid4().hex[:8]}"
        tenant = client.post(
            "/v1/tenants",
            json={"name": "Bench", "slug": slug, "admin_email": f"a@{slug}.test", "admin_password": PASSWORD},
            headers={"Authorization": f"Bearer {OPERATOR}"},
        ).json()
        token = client.post(
            "/v1/auth/login", json={"tenant": slug, "email": f"a@{slug}.test", "password": PASSWORD}
        ).json()["access_token"]
        h = {"Authorization": f"Bearer {token}"}
        s3_conn = client.post(
            "/v1/connections",
            json={
                "name": "s3",
                "kind": "s3",
                "config": {"bucket": "bench", "region": "us-east-1", "endpoint_url": s3_url},
                "secrets": {"access_key_id": S3_KEY, "secret_access_key": S3_SECRET},
            },
            headers=h,
        ).json()["id"]
        az_conn = client.post(
            "/v1/connections",
            json={
                "name": "azure",
                "kind": "azure_blob",
                "config": {"account_url": az_url, "container": "bench"},
                "secrets": {"account_key": AZ_KEY},
            },
            headers=h,
        ).json()["id"]
        assert client.post(f"/v1/connections/{s3_conn}/test", headers=h).json()["ok"]
        assert client.post(f"/v1/connections/{az_conn}/test", headers=h).json()["ok"]

    tenant_id = uuid.UUID(tenant["id"])
    admin_id = uuid.UUID(tenant["admin_user_id"])
    print(f"writing a {size // MIB} MiB random file into the quarantine ...")
    upload_id = uuid.uuid4()
    source = settings.quarantine_root / str(tenant_id) / str(upload_id)
    source.parent.mkdir(parents=True, exist_ok=True)
    with source.open("wb") as fh:
        for _ in range(size // (64 * MIB)):
            fh.write(os.urandom(64 * MIB))
    asyncio.run(
        sql(
            "INSERT INTO uploads (id, tenant_id, owner_id, filename, original_filename, size, state, "
            f"storage_key, detected_type) VALUES ('{upload_id}', '{tenant_id}', '{admin_id}', 'big.bin', "
            f"'big.bin', {size}, 'clean', '{tenant_id}/{upload_id}', 'application/octet-stream')",
            db=DB,
        )
    )

    async def deliver(connection_id: str) -> None:
        from gateway.connections.wiring import connection_services_for
        from gateway.db import Database, create_engine

        await sql(
            f"UPDATE uploads SET state = 'clean', connection_id = '{connection_id}' WHERE id = '{upload_id}'",
            db=DB,
        )
        db = Database(create_engine(settings))
        try:
            wired = connection_services_for(settings, db)
            outcome = await wired.delivery.run(tenant_id, upload_id)
            assert outcome.state == "delivered", outcome  # type: ignore[union-attr]
        finally:
            await db.dispose()

    async def direct_s3() -> None:
        await asyncio.to_thread(s3.upload_file, str(source), "bench", f"direct/{uuid.uuid4()}")

    async def direct_azure() -> None:
        def upload() -> None:
            with source.open("rb") as fh:
                azure.get_blob_client("bench", f"direct/{uuid.uuid4()}").upload_blob(fh, overwrite=True)

        await asyncio.to_thread(upload)

    print(f"\ndelivery of {size / 1e6:.0f} MB, {runs} runs each (machine: {os.cpu_count()} cores)")
    via_s3 = timed("S3 (SeaweedFS) through Filegate", runs, size, lambda: deliver(s3_conn))
    direct_s3_rate = timed("S3 (SeaweedFS) direct boto3 upload_file", runs, size, direct_s3)
    via_az = timed("Azure (Azurite) through Filegate", runs, size, lambda: deliver(az_conn))
    direct_az_rate = timed("Azure (Azurite) direct upload_blob", runs, size, direct_azure)
    print(f"  ratio S3    Filegate / direct: {via_s3 / direct_s3_rate:.2f}  (target >= 0.8)")
    print(f"  ratio Azure Filegate / direct: {via_az / direct_az_rate:.2f}  (target >= 0.8)")

    decrypts(settings, tenant_id, uuid.UUID(s3_conn))


def decrypts(settings: Any, tenant_id: uuid.UUID, connection_id: uuid.UUID) -> None:
    from connectors.credentials import Binding
    from gateway.keys import load_credentials

    credentials = load_credentials(settings)
    binding = Binding(str(tenant_id), str(connection_id), "secret_access_key")
    sealed = credentials.seal(b"x" * 40, binding)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < 2.0:
        for _ in range(1000):
            credentials.open(sealed, binding)
        n += 1000
    rate = n / (time.perf_counter() - t0)
    print(f"\ncredential decrypts (unwrap data key + open secret, AES-256-GCM): {rate:,.0f}/s on one core")


if __name__ == "__main__":
    main()
