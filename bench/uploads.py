"""Uploads benchmark: ingest rate, gateway memory under a burst, last byte → clean, scan throughput.

Runs a real `filegate serve` (one process) against the machine's PostgreSQL and Redis, in a database of
its own, and puts every number next to a peer measured in the same run (this machine is shared and noisy):
  1. one 1 GiB file of random bytes, streamed from disk, into the gateway by raw POST and multipart (curl
     -T / -F) and by tus in 8 MiB PATCHes (tuspy), with no scan worker running; peers: the same file and
     tus client against @tus/server + FileStore (bench/js/tus_server.mjs; it never fsyncs), and curl -T
     into bench/receiver.py (granian + uvloop, body to disk with SHA-256 and one fsync, as the gateway
     does: loopback HTTP + disk, nothing else);
  2. peak RSS of the gateway's process tree while 100 concurrent 20 MB raw POSTs arrive (sampled every
     50 ms); peer: the same burst into the receiver;
  3. 202 (last byte received) → `clean` for 1 MB uploads at a steady rate, with `filegate worker` and a
     private clamd (scripts/clamd.sh), polling every 20 ms; peer: clamd's own INSTREAM time for 1 MB;
  4. the pipeline's scan rate on a 500 MB upload (verdict.scanned_at - quarantined) against clamd's own
     INSTREAM rate (bench/clamd_stream.py's raw writer); the file's first bytes change before every
     scan, so clamd's clean-file cache never answers.
MB = 10^6 bytes. Needs curl, clamd and node/npm (scripts/npm.sh installs bench/js from its lockfile).

    .venv/bin/python bench/uploads.py [--runs 3] [--rate 10] [--seconds 20] [--scan-runs 2]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import asyncpg
import granian
import httpx
import psutil
import redis
from tusclient.client import TusClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.clamd_stream import free_port, freshen, raw_instream  # noqa: E402
from bench.identity import pg_url  # noqa: E402
from tenants.permissions import Permission  # noqa: E402

REDIS = os.environ.get("FILEGATE_TEST_REDIS", "redis://127.0.0.1:6379/0")
DB = "filegate_bench_uploads"
OPERATOR = "bench-operator-token"
PASSWORD = "bench-Passphrase-0451"
JS = ROOT / "bench" / "js"
MB, MiB, GiB = 1000**2, 1024**2, 1024**3
TUS_CHUNK = 8 * MiB
CLAMD_CHUNK = 256 * 1024
POLL = 0.02
PENDING = ("receiving", "quarantined", "scanning")
TUS_NODE = "@tus/server FileStore (same client)"
# The targets: these ways in at least 0.8x the receiver and 1.25x @tus/server (medians, same run).
TARGETED = ("gateway raw POST (curl -T)", "gateway tus (tuspy, 8 MiB PATCHes)")
RAW_HEADERS = {
    "Content-Type": "application/octet-stream",
    "Content-Disposition": 'attachment; filename="x.bin"',
}


# --- things this run starts; each one is undone on the way out, Ctrl-C included ----------------------------
@contextlib.contextmanager
def database() -> Iterator[str]:
    """A fresh database built by the real migrations; dropped afterwards. Yields the app role's URL."""

    async def sql(*statements: str) -> None:
        conn = await asyncpg.connect(pg_url("postgres").replace("+asyncpg", ""))
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(sql(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)', f'CREATE DATABASE "{DB}"'))
    try:
        from gateway.migrate import upgrade

        upgrade(pg_url(DB), "filegate_app")
        yield pg_url(DB, "filegate_app")
    finally:
        asyncio.run(sql(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)'))


@contextlib.contextmanager
def process(name: str, cmd: list[str], env: dict[str, str], logs: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A child process whose output goes to logs/<name>.log; terminated (then killed) on the way out.

    It gets a process group of its own, so Ctrl-C reaches only this script, which stops its children in
    order (a gateway that died first would turn the cleanup's own requests into errors)."""
    with (logs / f"{name}.log").open("wb") as log:
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, process_group=0)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def private_clamd(tmp: Path) -> Iterator[str]:
    """scripts/clamd.sh on a free port (our test signatures only unless CLAMD_OFFICIAL says otherwise)."""
    directory, port = tmp / "clamd", free_port()
    script = str(ROOT / "scripts" / "clamd.sh")
    env = {**os.environ, "CLAMD_OFFICIAL": os.environ.get("CLAMD_OFFICIAL", "0")}
    try:
        subprocess.run([script, "start", str(directory), str(port)], check=True, env=env, capture_output=True)
        yield f"tcp://127.0.0.1:{port}"
    finally:
        subprocess.run([script, "stop", str(directory)], check=False, capture_output=True)


@contextlib.contextmanager
def redis_namespace() -> Iterator[str]:
    prefix = f"bench:{uuid.uuid4().hex}:"
    try:
        yield prefix
    finally:
        client = redis.Redis.from_url(REDIS)
        # arq keeps each queued job under a global key; jobs no worker took are still there.
        jobs = [j.decode() for j in client.zrange(f"{prefix}queue", 0, -1)]
        keys = [f"arq:{kind}:{j}" for j in jobs for kind in ("job", "in-progress", "retry")]
        keys += list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


def wait_http(url: str, proc: subprocess.Popen[bytes], *, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"bench: {proc.args[:3]} exited with {proc.returncode} (see its log)")
        with contextlib.suppress(httpx.TransportError):
            httpx.options(url, timeout=1)
            return
        time.sleep(0.1)
    sys.exit(f"bench: nothing answers on {url}")


def gateway_env(db_url: str, prefix: str, data: Path, port: int, clamd_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FILEGATE_")}
    env.update(
        FILEGATE_DATABASE_URL=db_url,
        FILEGATE_REDIS_URL=REDIS,
        FILEGATE_REDIS_KEY_PREFIX=prefix,
        FILEGATE_DATA_DIR=str(data),
        FILEGATE_OPERATOR_TOKEN=OPERATOR,
        FILEGATE_PORT=str(port),
        FILEGATE_WORKERS="1",
        FILEGATE_CLAMD_URL=clamd_url,
        FILEGATE_LOG_LEVEL="WARNING",
    )
    return env


def tenant_key(url: str) -> dict[str, str]:
    """A tenant whose policy takes 2 GiB of anything, and an API key of its admin (keys do not expire)."""
    slug, email = f"bench-{uuid.uuid4().hex[:8]}", "admin@bench.test"
    body = {"name": "Bench", "slug": slug, "admin_email": email, "admin_password": PASSWORD}
    httpx.post(
        f"{url}/v1/tenants", headers={"Authorization": f"Bearer {OPERATOR}"}, json=body
    ).raise_for_status()
    login = httpx.post(f"{url}/v1/auth/login", json={"tenant": slug, "email": email, "password": PASSWORD})
    jwt = {"Authorization": f"Bearer {login.raise_for_status().json()['access_token']}"}
    policy = {"max_file_size": 2 * GiB, "allowed_types": ["*/*"]}
    httpx.put(f"{url}/v1/policy", headers=jwt, json=policy).raise_for_status()
    key = httpx.post(
        f"{url}/v1/api-keys", headers=jwt, json={"name": "bench", "scopes": [p.value for p in Permission]}
    )
    return {"Authorization": f"Bearer {key.raise_for_status().json()['key']}"}


def random_file(path: Path, size: int) -> Path:
    with path.open("wb") as f:
        for offset in range(0, size, MiB):
            f.write(os.urandom(min(MiB, size - offset)))
    return path


def empty_dir(path: Path) -> None:
    for child in path.iterdir():
        shutil.rmtree(child) if child.is_dir() else child.unlink()


# --- clients ---------------------------------------------------------------------------------------------
def curl_post(url: str, path: Path, headers: dict[str, str], *, form: bool = False) -> tuple[float, dict]:
    """POST a file streamed from disk (curl -T raw body, or -F multipart field `file`); (seconds, JSON)."""
    cmd = ["curl", "-sS", "--max-time", "900", "-X", "POST", "-H", "Expect:"]
    cmd += ["-w", "\n%{http_code} %{time_total}"]
    for k, v in (headers if form else {**headers, **RAW_HEADERS}).items():
        cmd += ["-H", f"{k}: {v}"]
    cmd += ["-F", f"file=@{path};type=application/octet-stream;filename=x.bin"] if form else ["-T", str(path)]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    body, _, tail = out.rpartition("\n")
    status, seconds = tail.split()
    if status not in ("200", "202"):
        raise RuntimeError(f"POST {url}: HTTP {status} {body[:300]}")
    return float(seconds), json.loads(body)


def tus_post(endpoint: str, path: Path, headers: dict[str, str]) -> float:
    """Create + PATCH the whole file in TUS_CHUNK pieces with tuspy; seconds from creation to last answer."""
    started = time.perf_counter()
    uploader = TusClient(endpoint, headers=headers).uploader(
        file_path=str(path),
        chunk_size=TUS_CHUNK,
        metadata={"filename": "x.bin", "filetype": "application/octet-stream"},
    )
    uploader.upload()
    return time.perf_counter() - started


def curl_burst(url: str, path: Path, headers: dict[str, str], n: int) -> float:
    """n raw POSTs of `path` at once from one curl (--parallel); seconds until the last answer."""
    cmd = ["curl", "-sS", "--parallel", "--parallel-immediate", "--parallel-max", str(n), "-X", "POST"]
    cmd += ["-H", "Expect:", "-w", "%{http_code}\n", "--max-time", "600"]
    for k, v in {**headers, **RAW_HEADERS}.items():
        cmd += ["-H", f"{k}: {v}"]
    for _ in range(n):
        cmd += ["-T", str(path), "-o", "/dev/null", url]
    started = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    elapsed = time.perf_counter() - started
    if (codes := out.split()) != [codes[0]] * n or codes[0] not in ("200", "202"):
        raise RuntimeError(f"burst: answers {sorted(set(codes))} ({len(codes)} of {n})")
    return elapsed


class PeakRss(threading.Thread):
    """Samples the summed RSS of a process and all its descendants every 50 ms; `peak` in bytes."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.root = psutil.Process(pid)
        self.peak = self.baseline = self.sample()
        self.done = threading.Event()

    def sample(self) -> int:
        total = 0
        for proc in [self.root, *self.root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
        return total

    def run(self) -> None:
        while not self.done.wait(0.05):
            self.peak = max(self.peak, self.sample())

    def __enter__(self) -> PeakRss:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.join()


# --- what one run starts ---------------------------------------------------------------------------------
@dataclass
class Bench:
    tmp: Path
    env: dict[str, str]  # the gateway's (and the worker's)
    url: str
    headers: dict[str, str]  # an API key of the tenant admin
    api: httpx.Client
    gateway: subprocess.Popen[bytes]
    receiver: subprocess.Popen[bytes]
    receiver_url: str
    receiver_dir: Path
    tus_node_url: str
    tus_node_dir: Path
    clamd_url: str

    def purge(self) -> None:
        """Delete every upload (frees the quarantine; their queued scan jobs then find nothing to do)."""
        while items := self.api.get("/v1/uploads", params={"limit": 100}).raise_for_status().json()["items"]:
            for item in items:
                self.api.delete(f"/v1/uploads/{item['id']}").raise_for_status()

    def start_worker(self, stack: contextlib.ExitStack) -> None:
        """`filegate worker`, once it has taken the (now pointless) scan jobs of the steps before."""
        cmd = [sys.executable, "-m", "gateway.cli", "worker"]
        worker = stack.enter_context(process("worker", cmd, self.env, self.tmp / "logs"))
        client = redis.Redis.from_url(REDIS)
        try:
            deadline = time.monotonic() + 120
            while (
                client.zcard(f"{self.env['FILEGATE_REDIS_KEY_PREFIX']}queue") and time.monotonic() < deadline
            ):
                if worker.poll() is not None:
                    sys.exit("bench: filegate worker exited (see its log)")
                time.sleep(0.2)
            time.sleep(1)  # the jobs it took last are finishing
        finally:
            client.close()


def start(stack: contextlib.ExitStack, tmp: Path) -> Bench:
    logs, data, tus_dir, rx_dir = (tmp / d for d in ("logs", "data", "tus-node", "receiver"))
    for d in (logs, data, tus_dir, rx_dir):
        d.mkdir()
    db_url = stack.enter_context(database())
    prefix = stack.enter_context(redis_namespace())
    clamd_url = stack.enter_context(private_clamd(tmp))
    env = gateway_env(db_url, prefix, data, free_port(), clamd_url)
    url = f"http://127.0.0.1:{env['FILEGATE_PORT']}"
    gateway = stack.enter_context(
        process("gateway", [sys.executable, "-m", "gateway.cli", "serve"], env, logs)
    )
    rx_port, tus_port = free_port(), free_port()
    rx_cmd = [sys.executable, "-m", "granian", "--interface", "asgi", "--loop", "uvloop", "--workers", "1"]
    rx_env = {**os.environ, "RECEIVER_DIR": str(rx_dir), "PYTHONPATH": str(ROOT)}
    receiver = stack.enter_context(
        process("receiver", [*rx_cmd, "--port", str(rx_port), "bench.receiver:app"], rx_env, logs)
    )
    node_cmd = ["node", str(JS / "tus_server.mjs"), str(tus_port), str(tus_dir)]
    tus_node = stack.enter_context(process("tus-node", node_cmd, dict(os.environ), logs))
    rx_url, tus_url = f"http://127.0.0.1:{rx_port}/", f"http://127.0.0.1:{tus_port}/files"
    for address, proc in ((url, gateway), (rx_url, receiver), (tus_url, tus_node)):
        wait_http(address, proc)
    headers = tenant_key(url)
    api = stack.enter_context(httpx.Client(base_url=url, headers=headers, timeout=60))
    return Bench(tmp, env, url, headers, api, gateway, receiver, rx_url, rx_dir, tus_url, tus_dir, clamd_url)


# --- the four measurements --------------------------------------------------------------------------------
def ingest(b: Bench, payload: Path, runs: int) -> dict[str, list[float]]:
    """MB/s of each way in, `runs` times, interleaved and rotated (a noisy minute hurts all alike)."""
    uploads = f"{b.url}/v1/uploads"
    ways: dict[str, tuple[Callable[[], float], Callable[[], None]]] = {
        "gateway raw POST (curl -T)": (lambda: curl_post(uploads, payload, b.headers)[0], b.purge),
        "gateway multipart (curl -F)": (
            lambda: curl_post(uploads, payload, b.headers, form=True)[0],
            b.purge,
        ),
        "gateway tus (tuspy, 8 MiB PATCHes)": (
            lambda: tus_post(f"{b.url}/v1/tus", payload, b.headers),
            b.purge,
        ),
        TUS_NODE: (
            lambda: tus_post(b.tus_node_url, payload, {}),
            lambda: empty_dir(b.tus_node_dir),
        ),
        "receiver (curl -T)": (
            lambda: curl_post(b.receiver_url, payload, {})[0],
            lambda: empty_dir(b.receiver_dir),
        ),
    }
    rates: dict[str, list[float]] = {name: [] for name in ways}
    names = list(ways)
    for i in range(runs):
        for name in names[i:] + names[:i]:  # each run starts with another one
            send, cleanup = ways[name]
            rates[name].append(payload.stat().st_size / MB / send())
            cleanup()
            os.sync()  # @tus/file-store never syncs: its dirty pages must not slow down whoever is next
            print(f"  {name:36} {rates[name][-1]:7.1f} MB/s", flush=True)
    return rates


def burst(b: Bench, n: int) -> dict[str, tuple[int, int, float]]:
    """n concurrent 20 MB raw POSTs into the gateway, then the receiver: (idle RSS, peak RSS, seconds)."""
    path = random_file(b.tmp / "20mb.bin", 20 * MB)
    results = {}
    for name, proc, url, headers, cleanup in (
        ("gateway", b.gateway, f"{b.url}/v1/uploads", b.headers, b.purge),
        ("receiver", b.receiver, b.receiver_url, {}, lambda: empty_dir(b.receiver_dir)),
    ):
        with PeakRss(proc.pid) as rss:
            seconds = curl_burst(url, path, headers, n)
        results[name] = (rss.baseline, rss.peak, seconds)
        print(f"  {name:10} peak RSS {rss.peak / MB:6.0f} MB, {seconds:6.2f} s", flush=True)
        cleanup()
    return results


async def to_clean(b: Bench, *, rate: float, seconds: float) -> list[tuple[float, float]]:
    """1 MB uploads at `rate`/s. Per upload: seconds from its 202 until GET says `clean`, and the server's
    own quarantined -> verdict.scanned_at (to tell queueing and scanning from our polling); inf: never."""
    never = (float("inf"), float("inf"))
    async with httpx.AsyncClient(base_url=b.url, headers=b.headers, timeout=60) as client:

        async def one(start_in: float) -> tuple[float, float]:
            await asyncio.sleep(start_in)
            r = await client.post("/v1/uploads", content=os.urandom(MB), headers=RAW_HEADERS)
            received = time.perf_counter()
            created = r.raise_for_status().json()
            while (upload := (await client.get(f"/v1/uploads/{created['id']}")).json())["state"] in PENDING:
                if time.perf_counter() - received > 60:
                    return never
                await asyncio.sleep(POLL)
            if upload["state"] != "clean":
                return never
            return time.perf_counter() - received, server_seconds(created, upload)

        return list(await asyncio.gather(*(one(i / rate) for i in range(int(rate * seconds)))))


def server_seconds(created: dict, decided: dict) -> float:
    """From the 202's `updated_at` (the upload became quarantined) to the verdict's `scanned_at`."""
    quarantined = datetime.fromisoformat(created["updated_at"])
    return (datetime.fromisoformat(decided["verdict"]["scanned_at"]) - quarantined).total_seconds()


def clamd_small(b: Bench, n: int = 20) -> list[float]:
    """clamd's own INSTREAM time for fresh 1 MB files (the floor under 202 -> clean)."""
    path, times = b.tmp / "1mb.bin", []
    for _ in range(n):
        random_file(path, MB)
        started = time.perf_counter()
        raw_instream(b.clamd_url, path, CLAMD_CHUNK)
        times.append(time.perf_counter() - started)
    return times


def wait_until_decided(api: httpx.Client, upload_id: str, *, seconds: float = 600) -> dict:
    deadline = time.monotonic() + seconds
    while (upload := api.get(f"/v1/uploads/{upload_id}").raise_for_status().json())["state"] in PENDING:
        if time.monotonic() > deadline:
            raise RuntimeError(f"upload {upload_id} still {upload['state']} after {seconds} s")
        time.sleep(POLL)
    return upload


def scan_rates(b: Bench, path: Path, runs: int) -> tuple[list[float], list[float]]:
    """MB/s of clamd's own INSTREAM (raw writer) and of the pipeline (quarantined -> verdict), alternating."""
    size = path.stat().st_size / MB
    raw, pipeline = [], []
    for _ in range(runs):
        freshen(path)
        started = time.perf_counter()
        answer = raw_instream(b.clamd_url, path, CLAMD_CHUNK)
        raw.append(size / (time.perf_counter() - started))
        freshen(path)
        _, created = curl_post(f"{b.url}/v1/uploads", path, b.headers)
        received = time.perf_counter()
        upload = wait_until_decided(b.api, created["id"])
        wall = time.perf_counter() - received
        if upload["state"] != "clean":
            raise RuntimeError(f"500 MB upload ended {upload['state']} ({upload['reason']}); clamd: {answer}")
        pipeline.append(size / server_seconds(created, upload))
        print(
            f"  clamd INSTREAM {raw[-1]:6.1f} MB/s; pipeline {pipeline[-1]:6.1f} MB/s "
            f"(202 -> clean seen after {wall:.2f} s)",
            flush=True,
        )
        b.api.delete(f"/v1/uploads/{created['id']}").raise_for_status()
    return raw, pipeline


# --- report -----------------------------------------------------------------------------------------------
def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def versions(clamd_url: str) -> str:
    tus_server = json.loads((JS / "node_modules/@tus/server/package.json").read_text())["version"]
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    curl = subprocess.run(["curl", "--version"], capture_output=True, text=True).stdout.split()[1]
    host, port = clamd_url.removeprefix("tcp://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"zVERSION\0")
        clamd = sock.recv(256).rstrip(b"\0").decode()
    return (
        f"granian {granian.__version__}, @tus/server {tus_server} (node {node}), curl {curl}, {clamd}, "
        f"{os.cpu_count()} cores"
    )


def row(measure: str, result: str, peer: str = "", target: str = "", met: bool | None = None) -> None:
    verdict = "" if met is None else "met" if met else "NOT met"
    print(f"  {measure:50} {result:32} {peer:36} {target:14} {verdict}".rstrip())


def report(r: dict, args: argparse.Namespace) -> None:
    print(f"\nFilegate uploads benchmark ({r['versions']}; gateway workers=1; MB = 10^6 bytes)")
    row("measure", "result", "peer (same run)", "target")
    floor = statistics.median(r["ingest"]["receiver (curl -T)"])
    node = statistics.median(r["ingest"][TUS_NODE])
    for name, rates in r["ingest"].items():
        median = statistics.median(rates)
        targeted = name in TARGETED
        row(
            f"ingest 1 GiB, {name}",
            f"best {max(rates):5.0f}, median {median:5.0f} MB/s",
            "" if name.startswith("receiver") else f"{median / floor:4.0%} of the receiver's median",
            ">= 0.8x" if targeted else "",
            median >= 0.8 * floor if targeted else None,
        )
        if targeted:
            row("", "", f"{median / node:4.2f}x @tus/server's median", ">= 1.25x", median >= 1.25 * node)
    (gw_idle, gw_peak, gw_s), (rx_idle, rx_peak, rx_s) = r["burst"]["gateway"], r["burst"]["receiver"]
    row(
        f"peak RSS, {args.burst} x 20 MB raw POSTs at once",
        f"{gw_peak / MB:5.0f} MB (idle {gw_idle / MB:.0f} MB)",
        f"receiver {rx_peak / MB:.0f} MB (idle {rx_idle / MB:.0f} MB)",
        "< 400 MB",
        gw_peak < 400 * MB,
    )
    row("  time for the burst", f"{gw_s:5.2f} s", f"receiver {rx_s:.2f} s")
    lat, server = [x[0] for x in r["latency"]], [x[1] for x in r["latency"]]
    row(
        f"202 -> clean, 1 MB at {args.rate:g}/s for {args.seconds:g} s",
        f"p50 {pct(lat, 0.5) * 1000:5.0f}, p99 {pct(lat, 0.99) * 1000:5.0f} ms",
        f"clamd alone, 1 MB: p50 {pct(r['clamd_small'], 0.5) * 1000:.0f} ms",
        "p50 < 300 ms",
        pct(lat, 0.5) < 0.3,
    )
    row(
        "  of which quarantined -> scanned_at (server)",
        f"p50 {pct(server, 0.5) * 1000:5.0f}, p99 {pct(server, 0.99) * 1000:5.0f} ms",
    )
    if lost := sum(1 for x in lat if x == float("inf")):
        row("  not clean within 60 s", f"{lost} of {len(lat)}")
    raw, pipe = r["scan"]
    row(
        "scan 500 MB, pipeline (quarantined -> verdict)",
        f"best {max(pipe):5.1f} MB/s = {max(pipe) / max(raw):.2f}x clamd",
        f"clamd INSTREAM best {max(raw):.1f} MB/s",
        ">= 0.8x clamd",
        max(pipe) >= 0.8 * max(raw),
    )
    print(f"  full run: {r['elapsed']:.0f} s")


# --- one run ----------------------------------------------------------------------------------------------
def run(args: argparse.Namespace, stack: contextlib.ExitStack, tmp: Path) -> dict:
    b = start(stack, tmp)
    results: dict = {"versions": versions(b.clamd_url)}
    print("1. ingest of 1 GiB (no scan worker)", flush=True)
    payload = random_file(tmp / "payload.bin", GiB)
    results["ingest"] = ingest(b, payload, args.runs)
    print(f"2. {args.burst} concurrent 20 MB raw POSTs", flush=True)
    results["burst"] = burst(b, args.burst)
    print(
        f"3. 202 -> clean, 1 MB at {args.rate:g}/s for {args.seconds:g} s (filegate worker, clamd)",
        flush=True,
    )
    b.start_worker(stack)
    results["clamd_small"] = clamd_small(b)
    results["latency"] = asyncio.run(to_clean(b, rate=args.rate, seconds=args.seconds))
    b.purge()
    print("4. scan throughput, 500 MB", flush=True)
    os.truncate(payload, 500 * MB)
    results["scan"] = scan_rates(b, payload, args.scan_runs)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3, help="ingest runs per way in")
    ap.add_argument("--burst", type=int, default=100, help="concurrent 20 MB uploads")
    ap.add_argument("--rate", type=float, default=10, help="1 MB uploads per second")
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--scan-runs", type=int, default=2)
    args = ap.parse_args()
    if not shutil.which("curl"):
        sys.exit("bench: curl is needed")
    subprocess.run([str(ROOT / "scripts" / "npm.sh"), str(JS)], check=True)  # @tus/server (npm ci once)
    started = time.perf_counter()
    try:
        with contextlib.ExitStack() as stack:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="filegate-bench-uploads-")))
            try:
                results = run(args, stack, tmp)
            except Exception:
                for log in sorted((tmp / "logs").glob("*.log")):
                    if tail := log.read_text(errors="replace")[-2000:].strip():
                        print(f"--- {log.name} (last lines)\n{tail}", file=sys.stderr)
                raise
    except KeyboardInterrupt:
        sys.exit("bench: interrupted; everything it started has been stopped and removed")
    results["elapsed"] = time.perf_counter() - started
    report(results, args)


if __name__ == "__main__":
    main()
