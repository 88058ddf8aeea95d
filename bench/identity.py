"""Identity benchmark: logins/s, GET /v1/me throughput and latency (JWT, API key), audit appends/s.

Runs a real `filegate serve` (granian) against the machine's PostgreSQL and Redis, in a database of its
own, and drives it with `wrk` (C, so the load generator does not steal the server's interpreter). Every
number has a peer measured in the same run, because this machine is shared and noisy:
  - /v1/me is compared with /health/live (same server, no auth, no database);
  - audit appends are compared with bare tenant transactions (BEGIN, set tenant, COMMIT) by the same writers.

    python bench/identity.py [--workers N] [--seconds S] [--concurrency C]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.audit import Actor, AuditContext, AuditRecorder  # noqa: E402
from gateway.db import Database, create_engine  # noqa: E402
from gateway.migrate import upgrade  # noqa: E402
from gateway.settings import Settings  # noqa: E402
from tenants.permissions import Permission  # noqa: E402

PG = os.environ.get("FILEGATE_TEST_PG", "postgresql+asyncpg://postgres@127.0.0.1:5432")
REDIS = os.environ.get("FILEGATE_TEST_REDIS", "redis://127.0.0.1:6379/0")
DB = "filegate_bench"
WRK_THREADS = int(os.environ.get("FILEGATE_BENCH_WRK_THREADS", "1"))
OPERATOR = "bench-operator-token"
PASSWORD = "bench-Passphrase-0451"


def pg_url(db: str, user: str = "postgres") -> str:
    base = PG.split("@", 1)[1].rsplit("/", 1)[0] if PG.count("/") > 2 else PG.split("@", 1)[1]
    return f"postgresql+asyncpg://{user}@{base}/{db}"


async def recreate_db() -> None:
    conn = await asyncpg.connect(pg_url("postgres").replace("+asyncpg", ""))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{DB}"')
    finally:
        await conn.close()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wrk(url: str, *, seconds: int, concurrency: int, headers: dict[str, str]) -> dict[str, float]:
    cmd = ["wrk", f"-t{WRK_THREADS}", f"-c{concurrency}", f"-d{seconds}s", "--latency", "--timeout", "5s"]
    for k, v in headers.items():
        cmd += ["-H", f"{k}: {v}"]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout

    def latency(pct: str) -> float:
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not m:
            return float("nan")
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {
        "rps": rps,
        "p50": latency("50"),
        "p99": latency("99"),
        "non2xx": float(non2xx.group(1)) if non2xx else 0.0,
        "socket_errors": bool(errors),
    }


async def logins(url: str, slug: str, email: str, *, n: int, concurrency: int) -> float:
    sem = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:

        async def one() -> None:
            async with sem:
                r = await client.post(
                    "/v1/auth/login", json={"tenant": slug, "email": email, "password": PASSWORD}
                )
                r.raise_for_status()

        await one()  # warm
        t0 = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(n)))
        return n / (time.perf_counter() - t0)


async def audit_rates(
    settings: Settings, tenant_id: uuid.UUID, *, writers: int, per_writer: int
) -> tuple[float, float]:
    db = Database(create_engine(settings))
    recorder = AuditRecorder(db)
    ctx = AuditContext(ip="127.0.0.1", request_id="bench")

    async def append(n: int) -> None:
        for i in range(per_writer):
            async with db.tenant(tenant_id) as s:
                await recorder.record(
                    s,
                    tenant_id,
                    ctx,
                    action="bench.append",
                    outcome="success",
                    actor=Actor("system", f"w{n}"),
                    details={"i": i},
                )

    async def bare(_: int) -> None:
        for _i in range(per_writer):
            async with db.tenant(tenant_id):
                pass

    try:
        await asyncio.gather(*(bare(n) for n in range(writers)))  # warm the pool
        t0 = time.perf_counter()
        await asyncio.gather(*(bare(n) for n in range(writers)))
        peer = writers * per_writer / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        await asyncio.gather(*(append(n) for n in range(writers)))
        rate = writers * per_writer / (time.perf_counter() - t0)
        verify = await recorder.verify(tenant_id)
        assert verify.ok, "chain broken under concurrency"
        return rate, peer
    finally:
        await db.dispose()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=1, help="gateway processes")
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--concurrency", type=int, default=50)
    ap.add_argument("--logins", type=int, default=100)
    args = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("bench: wrk is needed (apt-get install wrk); scripts/bench.sh installs it")

    asyncio.run(recreate_db())
    upgrade(pg_url(DB), "filegate_app")
    data = Path(tempfile.mkdtemp(prefix="filegate-bench-"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FILEGATE_")}
    env.update(
        FILEGATE_DATABASE_URL=pg_url(DB, "filegate_app"),
        FILEGATE_REDIS_URL=REDIS,
        FILEGATE_REDIS_KEY_PREFIX=f"bench:{uuid.uuid4().hex}:",
        FILEGATE_DATA_DIR=str(data),
        FILEGATE_OPERATOR_TOKEN=OPERATOR,
        FILEGATE_PORT=str(port),
        FILEGATE_WORKERS=str(args.workers),
        FILEGATE_LOGIN_IP_LIMIT="100000",
        FILEGATE_LOGIN_ACCOUNT_LIMIT="100000",
        FILEGATE_LOG_LEVEL="WARNING",
        FILEGATE_DATABASE_POOL_SIZE="20",
    )
    settings = Settings.from_env(env)
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                if httpx.get(f"{url}/health/live", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        slug, email = f"bench-{uuid.uuid4().hex[:8]}", "admin@bench.test"
        r = httpx.post(
            f"{url}/v1/tenants",
            headers={"Authorization": f"Bearer {OPERATOR}"},
            json={"name": "Bench", "slug": slug, "admin_email": email, "admin_password": PASSWORD},
        )
        r.raise_for_status()
        tenant_id = uuid.UUID(r.json()["id"])
        login = httpx.post(
            f"{url}/v1/auth/login", json={"tenant": slug, "email": email, "password": PASSWORD}
        ).json()
        jwt_h = {"Authorization": f"Bearer {login['access_token']}"}
        key = httpx.post(
            f"{url}/v1/api-keys",
            headers=jwt_h,
            json={"name": "bench", "scopes": [p.value for p in Permission]},
        ).json()["key"]
        key_h = {"Authorization": f"Bearer {key}"}

        from tenants.passwords import PasswordHashing

        cost = PasswordHashing(
            time_cost=settings.auth.argon2_time_cost, memory_kib=settings.auth.argon2_memory_kib
        ).parameters
        login_rate = asyncio.run(logins(url, slug, email, n=args.logins, concurrency=4))
        wrk(f"{url}/v1/me", seconds=2, concurrency=args.concurrency, headers=jwt_h)  # warm up
        peer = wrk(f"{url}/health/live", seconds=args.seconds, concurrency=args.concurrency, headers={})
        me_jwt = wrk(f"{url}/v1/me", seconds=args.seconds, concurrency=args.concurrency, headers=jwt_h)
        me_key = wrk(f"{url}/v1/me", seconds=args.seconds, concurrency=args.concurrency, headers=key_h)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(data, ignore_errors=True)

    from gateway.logging import configure_logging

    configure_logging("WARNING")  # the in-process audit writers would log every event
    appends, bare = asyncio.run(audit_rates(settings, tenant_id, writers=8, per_writer=250))

    c = args.concurrency
    print(
        f"\nFilegate identity benchmark ({os.cpu_count()} cores, gateway workers={args.workers}, "
        f"wrk -t{WRK_THREADS} -c{c} -d{args.seconds}s)"
    )
    print(f"  logins/s ({cost}, 4 concurrent): {login_rate:8.1f}")
    print(f"  {'endpoint':34} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8}")
    for name, res in (
        ("GET /health/live (peer)", peer),
        ("GET /v1/me, JWT", me_jwt),
        ("GET /v1/me, API key", me_key),
    ):
        print(f"  {name:34} {res['rps']:9.0f} {res['p50']:8.2f} {res['p99']:8.2f} {res['non2xx']:8.0f}")
    print(
        f"  audit appends/s, 1 tenant, 8 writers: {appends:8.0f}   (peer: bare tenant transactions/s {bare:8.0f})"
    )
    print(
        f"  targets: /v1/me p99 < 20 ms at c={c}: JWT {'met' if me_jwt['p99'] < 20 else 'NOT met'}, "
        f"API key {'met' if me_key['p99'] < 20 else 'NOT met'}; audit >= 1000/s: "
        f"{'met' if appends >= 1000 else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
