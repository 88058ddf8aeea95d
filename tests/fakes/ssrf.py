"""Stand-ins for an SSRF attack: an internal service that records every connection, a remote service that
answers every request with a redirect to it, and a DNS answer that changes between check and connect.

- `InternalTarget`: what the attacker wants reached (cloud metadata, the database, an admin port). It counts
  every TCP connection it accepts, before any byte is read, so a TLS handshake or a plain request both
  count; an HTTP request gets a 200 with a "secret" body, the prize of a followed redirect.
- `Redirector`: a storage, Graph or identity endpoint gone hostile: every request is answered
  `302 Location: <target>`.
- `RebindingDns`: `socket.getaddrinfo` for one name answers a public address the first time it is asked
  (the configuration check passes) and a loopback address after that (where the SDK then connects).
  Every other name resolves as usual. It is installed with pytest's monkeypatch: the resolution that the
  old code did twice (once to check, once in the SDK) both go through `socket.getaddrinfo`.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SECRET = b"internal-metadata-secret"
PUBLIC_ADDRESS = "93.184.215.14"  # a global unicast address, never connected to by a passing test


@dataclass
class InternalTarget:
    host: str = "127.0.0.1"
    port: int = 0
    connections: list[tuple[str, int]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


@contextmanager
def internal_target(host: str = "127.0.0.1", port: int = 0) -> Iterator[InternalTarget]:
    target = InternalTarget(host)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            target.paths.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(SECRET)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(SECRET)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def verify_request(self, request: Any, client_address: Any) -> bool:
            target.connections.append(client_address)
            return True

    with _serving(Server((host, port), Handler)) as bound:
        target.port = bound
        yield target


@dataclass
class Redirector:
    location: str
    url: str = ""
    requests: list[str] = field(default_factory=list)


@contextmanager
def redirector(location: str, *, status: int = 302) -> Iterator[Redirector]:
    """Answers every request with `status` and `Location: <location>` (plus the request's path)."""
    hostile = Redirector(location.rstrip("/"))

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            hostile.requests.append(f"{self.command} {self.path}")
            self.send_response(status)
            self.send_header("Location", hostile.location + self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    with _serving(server) as port:
        hostile.url = f"http://127.0.0.1:{port}"
        yield hostile


@contextmanager
def _serving(server: ThreadingHTTPServer) -> Iterator[int]:
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="ssrf-fake", daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class RebindingDns:
    """`name` resolves to `first` once, then to `then` (by default a loopback address)."""

    def __init__(self, name: str, *, first: str = PUBLIC_ADDRESS, then: str = "127.0.0.1") -> None:
        self.name = name
        self.first = first
        self.then = then
        self.asked = 0
        self._real = socket.getaddrinfo
        self._lock = threading.Lock()

    def getaddrinfo(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, bytes):
            host = host.decode()
        if host != self.name:
            return self._real(host, port, *args, **kwargs)
        with self._lock:
            self.asked += 1
            address = self.first if self.asked == 1 else self.then
        return self._real(address, port, *args, **kwargs)
