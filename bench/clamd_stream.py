"""clamd INSTREAM throughput: scanning.clamav.ClamdClient vs. a minimal blocking INSTREAM writer.

    .venv/bin/python bench/clamd_stream.py [--size-mb 500] [--repeat 2] [--url tcp://127.0.0.1:3310]

Without --url it starts a private clamd (scripts/clamd.sh, our test signatures only) on a free port
and stops it afterwards. Both writers send the same file with the same framing; before every run the
first bytes of the file are rewritten, because clamd caches the hashes of clean files and would answer
a second scan of the same bytes without scanning (that is the ~300 MiB/s one sees when repeating).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scanning.clamav import ClamdClient  # noqa: E402

MiB = 1024 * 1024


def raw_instream(url: str, path: Path, chunk_size: int) -> str:
    """The floor: blocking socket, one buffer reused, header + chunk per frame, reply read at the end."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(parts.path)
    else:
        sock = socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 3310))
    buf = bytearray(chunk_size)
    view = memoryview(buf)
    with sock, path.open("rb", buffering=0) as f:
        sock.sendall(b"zINSTREAM\0")
        while n := f.readinto(buf):
            sock.sendall(struct.pack(">I", n))
            sock.sendall(view[:n])
        sock.sendall(struct.pack(">I", 0))
        reply = b""
        while not reply.endswith(b"\0"):
            data = sock.recv(4096)
            if not data:
                break
            reply += data
    return reply.rstrip(b"\0").decode()


def make_file(path: Path, size_mb: int) -> None:
    with path.open("wb") as f:
        for _ in range(size_mb):
            f.write(os.urandom(MiB))


def freshen(path: Path) -> None:
    # New bytes at the start: a new hash, so clamd's clean-file cache cannot answer.
    with path.open("r+b") as f:
        f.write(os.urandom(64))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", help="a running clamd; default: start a private one")
    parser.add_argument("--size-mb", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--chunk-kib", type=int, default=256)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="filegate-bench-") as tmp:
        path = Path(tmp) / "payload.bin"
        make_file(path, args.size_mb)
        clamd_dir = None
        url = args.url
        if url is None:
            clamd_dir = tempfile.mkdtemp(prefix="filegate-bench-clamd-")
            port = free_port()
            subprocess.run(
                [str(ROOT / "scripts" / "clamd.sh"), "start", clamd_dir, str(port)],
                check=True,
                env={**os.environ, "CLAMD_OFFICIAL": os.environ.get("CLAMD_OFFICIAL", "0")},
            )
            url = f"tcp://127.0.0.1:{port}"
        try:
            client = ClamdClient(url, chunk_size=args.chunk_kib * 1024, timeout=120)
            print(f"{args.size_mb} MiB of random bytes, {args.chunk_kib} KiB chunks, {url}")
            results: dict[str, list[float]] = {"raw": [], "client": []}
            for _ in range(args.repeat):
                for name in ("raw", "client"):
                    freshen(path)
                    started = time.perf_counter()
                    if name == "raw":
                        answer: object = raw_instream(url, path, args.chunk_kib * 1024)
                    else:
                        answer = asyncio.run(client.scan_file(path))
                    elapsed = time.perf_counter() - started
                    rate = args.size_mb / elapsed
                    results[name].append(rate)
                    print(f"  {name:6} {elapsed:6.2f} s  {rate:6.1f} MiB/s  {answer}")
            for name, rates in results.items():
                print(f"{name:6} best {max(rates):6.1f} MiB/s  mean {sum(rates) / len(rates):6.1f} MiB/s")
            # The same bytes again: clamd's clean cache answers after receiving, spooling and hashing
            # them, so this is the transport alone (where the client's own cost would show).
            for name in ("raw", "client"):
                started = time.perf_counter()
                if name == "raw":
                    answer = raw_instream(url, path, args.chunk_kib * 1024)
                else:
                    answer = asyncio.run(client.scan_file(path))
                elapsed = time.perf_counter() - started
                print(f"{name:6} cached (transport only) {args.size_mb / elapsed:6.1f} MiB/s  {answer}")
        finally:
            if clamd_dir is not None:
                subprocess.run([str(ROOT / "scripts" / "clamd.sh"), "stop", clamd_dir], check=False)
                subprocess.run(["rm", "-rf", clamd_dir], check=False)


if __name__ == "__main__":
    main()
