"""A local stand-in for the Microsoft identity platform and the Graph drive API, over TLS.

One `ThreadingHTTPServer` on 127.0.0.1 (a free port) answers both the login host and the Graph host:

- identity: `GET /{tenant}/v2.0/.well-known/openid-configuration` (msal's tenant discovery) and
  `POST /{tenant}/oauth2/v2.0/token` (client credentials, with a client secret or a `client_assertion`
  JWT that is verified with pyjwt against the registered certificate: signature, `x5t`, aud, iss, sub,
  exp). msal refuses a non-https authority, hence TLS, with a CA made at test time (`FakeCA`).
- Graph v1.0 (bearer token checked on every call, errors in Graph's `{"error": {"code", "message"}}`
  shape): site by path, site drives and default drive, items by path, children with `@odata.nextLink`
  paging ($top/$skiptoken), simple upload, createUploadSession and the session's byte-range PUTs, content
  (302 to a pre-authenticated download URL), delete.
- throttling on demand: `throttle(n, retry_after=...)` answers the next n Graph calls with 429.

State lives in memory; every request is recorded (`requests`) with the watched strings it carried, so a
test can assert where a secret travelled.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import json
import re
import secrets
import ssl
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

FRAGMENT_UNIT = 320 * 1024


# --- certificates --------------------------------------------------------------------------------------
def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class FakeCA:
    """A throwaway CA and a server certificate for 127.0.0.1/localhost, written under `directory`."""

    def __init__(self, directory: Path) -> None:
        ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(_name("filegate test CA"))
            .issuer_name(_name("filegate test CA"))
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - dt.timedelta(minutes=5))
            .not_valid_after(_now() + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        import ipaddress

        cert = (
            x509.CertificateBuilder()
            .subject_name(_name("127.0.0.1"))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - dt.timedelta(minutes=5))
            .not_valid_after(_now() + dt.timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
                ),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
            )
            .sign(ca_key, hashes.SHA256())
        )
        directory.mkdir(parents=True, exist_ok=True)
        self.ca_path = directory / "ca.pem"
        self.cert_path = directory / "server.pem"
        self.key_path = directory / "server.key"
        self.ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
        self.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self.key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_path, self.key_path)
        return context


def app_certificate(password: str | None = None) -> tuple[str, x509.Certificate]:
    """An app registration's certificate: (PEM with the certificate and its private key, the certificate)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("filegate-app"))
        .issuer_name(_name("filegate-app"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - dt.timedelta(minutes=5))
        .not_valid_after(_now() + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password.encode()) if password else serialization.NoEncryption()
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    return (cert.public_bytes(serialization.Encoding.PEM) + key_pem).decode(), cert


# --- state -----------------------------------------------------------------------------------------------
@dataclass
class Seen:
    method: str
    path: str  # without the query
    query: str
    headers: dict[str, str]
    body_size: int
    status: int = 0
    carried: set[str] = field(default_factory=set)  # names of watched strings found in the request


@dataclass
class StoredFile:
    id: str
    data: bytes
    mime: str
    modified: dt.datetime


@dataclass
class UploadSession:
    drive_id: str
    path: str
    received: bytearray = field(default_factory=bytearray)
    total: int | None = None
    fragments: list[int] = field(default_factory=list)
    done: bool = False
    cancelled: bool = False


@dataclass
class FakeSite:
    id: str
    host: str
    path: str
    drives: dict[str, str]  # name -> drive id; the first one is the default


class GraphError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


class FakeSharePoint:
    def __init__(self, ca: FakeCA, *, tenant_id: str, client_id: str) -> None:
        self.ca = ca
        self.tenant_id = tenant_id
        self.client_id = client_id
        self.client_secret: str | None = None
        self.certificate: x509.Certificate | None = None
        self.sites: list[FakeSite] = []
        self.files: dict[str, dict[str, StoredFile]] = {}  # drive id -> path -> file
        self.sessions: dict[str, UploadSession] = {}
        self.downloads: dict[str, tuple[str, str]] = {}
        self.tokens: set[str] = set()
        self.requests: list[Seen] = []
        self.watched: dict[str, bytes] = {}
        # Gone hostile (SSRF tests): every request under `redirect_prefix` (Graph calls by default; never a
        # download's own redirect) answers 302 to `redirect_to`.
        self.redirect_to: str | None = None
        self.redirect_prefix = "/v1.0/"
        self._throttle = 0
        self._throttle_after = 1.0
        self._throttle_status = 429
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.base = ""

    # --- set-up ----------------------------------------------------------------------------------------
    def register_secret(self, secret: str) -> None:
        self.client_secret = secret

    def register_certificate(self, certificate: x509.Certificate) -> None:
        self.certificate = certificate

    def add_site(self, host: str, path: str, drives: tuple[str, ...] = ("Documents",)) -> FakeSite:
        site = FakeSite(
            id=f"{host},{uuid.uuid4()},{uuid.uuid4()}",
            host=host,
            path=path.rstrip("/"),
            drives={name: f"b!{secrets.token_urlsafe(12)}" for name in drives},
        )
        for drive_id in site.drives.values():
            self.files[drive_id] = {}
        self.sites.append(site)
        return site

    def watch(self, name: str, value: str) -> None:
        """Record, for every request, whether it carried `value` (in its target, headers or body)."""
        self.watched[name] = value.encode()

    def throttle(self, count: int, *, retry_after: float = 1, status: int = 429) -> None:
        with self._lock:
            self._throttle, self._throttle_after, self._throttle_status = count, retry_after, status

    def file(self, drive_id: str, path: str) -> StoredFile | None:
        with self._lock:
            return self.files[drive_id].get(path)

    def put_file(self, drive_id: str, path: str, data: bytes, mime: str = "application/octet-stream") -> None:
        with self._lock:
            self.files[drive_id][path] = StoredFile(str(uuid.uuid4()), data, mime, _now())

    def graph_calls(self) -> list[Seen]:
        return [r for r in self.requests if r.path.startswith("/v1.0/")]

    # --- running ----------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def running(self) -> Iterator[FakeSharePoint]:
        fake = self

        class Handler(_Handler):
            pass

        Handler.fake = fake
        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        server.socket = self.ca.server_context().wrap_socket(server.socket, server_side=True)
        self.base = f"https://127.0.0.1:{server.server_address[1]}"
        thread = threading.Thread(target=server.serve_forever, name="fake-sharepoint", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)

    # --- identity ---------------------------------------------------------------------------------------
    def openid_configuration(self, tenant: str) -> dict[str, Any]:
        if tenant != self.tenant_id:
            raise GraphError(400, "invalid_tenant", "AADSTS90002: Tenant not found.")
        return {
            "issuer": f"{self.base}/{tenant}/v2.0",
            "authorization_endpoint": f"{self.base}/{tenant}/oauth2/v2.0/authorize",
            "token_endpoint": f"{self.base}/{tenant}/oauth2/v2.0/token",
            "device_authorization_endpoint": f"{self.base}/{tenant}/oauth2/v2.0/devicecode",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt"],
        }

    def token(self, tenant: str, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        def error(status: int, code: str, description: str) -> tuple[int, dict[str, Any]]:
            return status, {"error": code, "error_description": description, "error_codes": [0]}

        if tenant != self.tenant_id:
            return error(400, "invalid_request", "AADSTS90002: Tenant not found.")
        if form.get("grant_type") != "client_credentials":
            return error(400, "unsupported_grant_type", "AADSTS70003: unsupported grant type.")
        if form.get("client_id") != self.client_id:
            return error(400, "unauthorized_client", "AADSTS700016: Application not found.")
        if form.get("scope") != f"{self.base}/.default":
            return error(400, "invalid_scope", "AADSTS1002012: The provided value for scope is not valid.")
        if "client_secret" in form:
            if self.client_secret is None or not secrets.compare_digest(
                form["client_secret"], self.client_secret
            ):
                return error(401, "invalid_client", "AADSTS7000215: Invalid client secret provided.")
        elif form.get("client_assertion_type") == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer":
            if not self._assertion_ok(tenant, form.get("client_assertion", "")):
                return error(
                    401, "invalid_client", "AADSTS700027: Client assertion failed signature validation."
                )
        else:
            return error(401, "invalid_client", "AADSTS7000216: client_assertion or client_secret required.")
        access_token = secrets.token_urlsafe(32)
        with self._lock:
            self.tokens.add(access_token)
        return 200, {
            "token_type": "Bearer",
            "expires_in": 3599,
            "ext_expires_in": 3599,
            "access_token": access_token,
        }

    def _assertion_ok(self, tenant: str, assertion: str) -> bool:
        if self.certificate is None:
            return False
        der = self.certificate.public_bytes(serialization.Encoding.DER)
        try:
            header = jwt.get_unverified_header(assertion)
            thumbprints = {
                "x5t": base64.urlsafe_b64encode(hashlib.sha1(der).digest()).decode().rstrip("="),
                "x5t#S256": base64.urlsafe_b64encode(hashlib.sha256(der).digest()).decode().rstrip("="),
            }
            # msal pads its base64url thumbprints; Entra accepts either form.
            if not any(str(header.get(name, "")).rstrip("=") == value for name, value in thumbprints.items()):
                return False
            claims = jwt.decode(
                assertion,
                self.certificate.public_key(),  # type: ignore[arg-type]
                algorithms=["RS256", "PS256"],
                audience=f"{self.base}/{tenant}/oauth2/v2.0/token",
                options={"require": ["exp", "aud", "iss", "sub", "jti"]},
            )
        except jwt.PyJWTError:
            return False
        return bool(claims.get("iss") == claims.get("sub") == self.client_id)

    # --- Graph ----------------------------------------------------------------------------------------------
    def check_graph_call(self, headers: dict[str, str]) -> None:
        with self._lock:
            if self._throttle > 0:
                self._throttle -= 1
                raise GraphError(
                    self._throttle_status,
                    "tooManyRequests" if self._throttle_status == 429 else "serviceNotAvailable",
                    "Too many requests.",
                    {"Retry-After": f"{self._throttle_after:g}"},
                )
        auth = headers.get("authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in self.tokens:
            raise GraphError(401, "InvalidAuthenticationToken", "Access token is empty or invalid.")

    def site_by_path(self, host: str, path: str) -> dict[str, Any]:
        for site in self.sites:
            if site.host == host and site.path == path.rstrip("/"):
                return self._site_json(site)
        raise GraphError(404, "itemNotFound", "Requested site could not be found")

    def site_by_id(self, site_id: str) -> FakeSite:
        for site in self.sites:
            if site_id in (site.id, site.host) and (site_id != site.host or site.path == ""):
                return site
        raise GraphError(404, "itemNotFound", "Requested site could not be found")

    def _site_json(self, site: FakeSite) -> dict[str, Any]:
        return {
            "id": site.id,
            "name": site.path.rsplit("/", 1)[-1],
            "webUrl": f"https://{site.host}{site.path}",
        }

    def drive_json(self, site: FakeSite, name: str) -> dict[str, Any]:
        return {"id": site.drives[name], "name": name, "driveType": "documentLibrary"}

    def item_json(self, drive_id: str, path: str) -> dict[str, Any]:
        with self._lock:
            files = self.files[drive_id]
            stored = files.get(path)
            if stored is not None:
                return self._file_json(drive_id, path, stored)
            if path == "" or any(p.startswith(path + "/") for p in files):
                return self._folder_json(drive_id, path)
        raise GraphError(404, "itemNotFound", "The resource could not be found.")

    def _file_json(self, drive_id: str, path: str, stored: StoredFile) -> dict[str, Any]:
        return {
            "id": stored.id,
            "name": path.rsplit("/", 1)[-1],
            "size": len(stored.data),
            "eTag": f'"{{{stored.id}}},1"',
            "lastModifiedDateTime": stored.modified.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "file": {"mimeType": stored.mime},
            "parentReference": {"driveId": drive_id, "path": f"/drive/root:/{path.rpartition('/')[0]}"},
        }

    def _folder_json(self, drive_id: str, path: str) -> dict[str, Any]:
        return {
            "id": "folder-" + hashlib.sha256(f"{drive_id}/{path}".encode()).hexdigest()[:16],
            "name": path.rsplit("/", 1)[-1] if path else "root",
            "size": 0,
            "lastModifiedDateTime": "2024-01-01T00:00:00Z",
            "folder": {"childCount": len(self._children(drive_id, path))},
        }

    def _children(self, drive_id: str, folder: str) -> list[dict[str, Any]]:
        files = self.files[drive_id]
        lead = folder + "/" if folder else ""
        found: dict[str, dict[str, Any]] = {}
        for path, stored in files.items():
            if not path.startswith(lead):
                continue
            rest = path[len(lead) :]
            if "/" in rest:
                sub = rest.split("/", 1)[0]
                found.setdefault(sub, self._folder_json(drive_id, lead + sub))
            else:
                found[rest] = self._file_json(drive_id, path, stored)
        return [found[name] for name in sorted(found)]

    def children(self, drive_id: str, folder: str, raw_path: str, query: str) -> dict[str, Any]:
        self.item_json(drive_id, folder)  # 404 for a missing folder
        params = parse_qsl(query, keep_blank_values=True)
        values = dict(params)
        top = int(values.get("$top", "200"))
        offset = int(base64.urlsafe_b64decode(values["$skiptoken"]).decode()) if "$skiptoken" in values else 0
        with self._lock:
            children = self._children(drive_id, folder)
        page = children[offset : offset + top]
        body: dict[str, Any] = {"value": page}
        if offset + top < len(children):
            token = base64.urlsafe_b64encode(str(offset + top).encode()).decode()
            kept = [(k, v) for k, v in params if k != "$skiptoken"] + [("$skiptoken", token)]
            body["@odata.nextLink"] = f"{self.base}{raw_path}?{urlencode(kept, safe='$,')}"
        return body

    def simple_upload(self, drive_id: str, path: str, data: bytes, mime: str) -> tuple[int, dict[str, Any]]:
        with self._lock:
            existed = path in self.files[drive_id]
            self.put_file(drive_id, path, data, mime)
            return (200 if existed else 201), self.item_json(drive_id, path)

    def create_session(self, drive_id: str, path: str) -> dict[str, Any]:
        sid = secrets.token_urlsafe(16)
        with self._lock:
            self.sessions[sid] = UploadSession(drive_id, path)
        return {
            "uploadUrl": f"{self.base}/upload/{sid}?tempauth={secrets.token_urlsafe(24)}",
            "expirationDateTime": (_now() + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "nextExpectedRanges": ["0-"],
        }

    def upload_range(self, sid: str, content_range: str, data: bytes) -> tuple[int, dict[str, Any]]:
        with self._lock:
            session = self.sessions.get(sid)
            if session is None or session.done or session.cancelled:
                raise GraphError(404, "itemNotFound", "The upload session was not found.")
            match = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", content_range)
            if not match:
                raise GraphError(400, "invalidRequest", "Invalid Content-Range header.")
            start, end, total = (int(g) for g in match.groups())
            if session.total not in (None, total) or start != len(session.received):
                raise GraphError(416, "invalidRange", "The fragment does not start at the expected range.")
            if end - start + 1 != len(data) or end >= total:
                raise GraphError(400, "invalidRange", "The Content-Range does not match the body.")
            final = end + 1 == total
            if not final and len(data) % FRAGMENT_UNIT:
                raise GraphError(400, "invalidRange", "Fragments must be a multiple of 320 KiB.")
            session.total = total
            session.received += data
            session.fragments.append(len(data))
            if not final:
                return 202, {"nextExpectedRanges": [f"{len(session.received)}-"]}
            session.done = True
            existed = session.path in self.files[session.drive_id]
            self.put_file(session.drive_id, session.path, bytes(session.received))
            session.received = bytearray()
            return (200 if existed else 201), self.item_json(session.drive_id, session.path)

    def cancel_session(self, sid: str) -> None:
        with self._lock:
            session = self.sessions.get(sid)
            if session is None:
                raise GraphError(404, "itemNotFound", "The upload session was not found.")
            session.cancelled = True
            session.received = bytearray()

    def download_url(self, drive_id: str, path: str) -> str:
        with self._lock:
            if path not in self.files[drive_id]:
                raise GraphError(404, "itemNotFound", "The resource could not be found.")
            token = secrets.token_urlsafe(24)
            self.downloads[token] = (drive_id, path)
        # Another host name for the same server, as Graph downloads come from another host: the
        # client must not carry its bearer token there (requests drops it on a cross-host redirect).
        return f"{self.base.replace('127.0.0.1', 'localhost')}/download/{token}"

    def delete(self, drive_id: str, *, item_id: str | None = None, path: str | None = None) -> None:
        with self._lock:
            files = self.files[drive_id]
            if path is None:
                path = next((p for p, f in files.items() if f.id == item_id), None)
            if path is not None and path in files:
                del files[path]
                return
            if path is not None and any(p.startswith(path + "/") for p in files):
                for p in [p for p in files if p.startswith(path + "/")]:
                    del files[p]
                return
        raise GraphError(404, "itemNotFound", "The resource could not be found.")


_SITE_BY_PATH = re.compile(r"^/v1\.0/sites/([^/:]+):(/[^:]*)$")
_SITE = re.compile(r"^/v1\.0/sites/([^/]+)(/drives|/drive)?$")
_BY_PATH = re.compile(r"^/v1\.0/drives/([^/]+)/root:/([^:]*):(/[A-Za-z]*)?$")
_ROOT_CHILDREN = re.compile(r"^/v1\.0/drives/([^/]+)/root/children$")
_BY_ID = re.compile(r"^/v1\.0/drives/([^/]+)/items/([^/]+)$")
_TOKEN = re.compile(r"^/([^/]+)/oauth2/v2\.0/token$")
_OPENID = re.compile(r"^/([^/]+)/v2\.0/\.well-known/openid-configuration$")


class _Handler(BaseHTTPRequestHandler):
    fake: FakeSharePoint
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def _handle(self) -> None:
        fake = self.fake
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        headers = {k.lower(): v for k, v in self.headers.items()}
        seen = Seen(self.command, parts.path, parts.query, headers, len(body))
        raw = self.path.encode() + b"\n" + str(self.headers).encode() + b"\n" + body
        seen.carried = {name for name, value in fake.watched.items() if value and value in raw}
        with fake._lock:
            fake.requests.append(seen)
        try:
            status, payload, extra = self._route(parts.path, parts.query, headers, body)
        except GraphError as exc:
            status, extra = exc.status, exc.headers
            if parts.path.startswith("/v1.0/") or parts.path.startswith("/upload/"):
                payload = {
                    "error": {"code": exc.code, "message": exc.message, "innerError": {"request-id": "x"}}
                }
            else:
                payload = {"error": exc.code, "error_description": exc.message}
        seen.status = status
        self._send(status, payload, extra)

    def _send(self, status: int, payload: dict[str, Any] | bytes | None, extra: dict[str, str]) -> None:
        if isinstance(payload, bytes):
            data, ctype = payload, "application/octet-stream"
        elif payload is None:
            data, ctype = b"", ""
        else:
            data, ctype = json.dumps(payload).encode(), "application/json"
        self.send_response(status)
        if ctype:
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for name, value in extra.items():
            self.send_header(name, value)
        self.end_headers()
        if data and self.command != "HEAD":
            self.wfile.write(data)

    def _route(
        self, path: str, query: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, Any] | bytes | None, dict[str, str]]:
        fake = self.fake
        method = self.command
        if method == "GET" and (m := _OPENID.match(path)):
            return 200, fake.openid_configuration(m.group(1)), {}
        if fake.redirect_to and path.startswith(fake.redirect_prefix) and not path.endswith(":/content"):
            return 302, None, {"Location": fake.redirect_to}
        if method == "POST" and (m := _TOKEN.match(path)):
            form = dict(parse_qsl(body.decode(), keep_blank_values=True))
            status, payload = fake.token(m.group(1), form)
            return status, payload, {}
        if path.startswith("/upload/"):
            sid = path[len("/upload/") :]
            if method == "PUT":
                status, payload = fake.upload_range(sid, headers.get("content-range", ""), body)
                return status, payload, {}
            if method == "DELETE":
                fake.cancel_session(sid)
                return 204, None, {}
        if method == "GET" and path.startswith("/download/"):
            with fake._lock:
                target = fake.downloads.get(path[len("/download/") :])
            stored = fake.file(*target) if target else None
            if stored is None:
                raise GraphError(404, "itemNotFound", "The resource could not be found.")
            return 200, stored.data, {}
        if not path.startswith("/v1.0/"):
            raise GraphError(404, "notFound", "No such endpoint.")

        fake.check_graph_call(headers)
        if method == "GET" and (m := _SITE_BY_PATH.match(path)):
            return 200, fake.site_by_path(unquote(m.group(1)), unquote(m.group(2))), {}
        if method == "GET" and (m := _SITE.match(path)):
            site = fake.site_by_id(unquote(m.group(1)))
            if m.group(2) == "/drives":
                return 200, {"value": [fake.drive_json(site, name) for name in site.drives]}, {}
            if m.group(2) == "/drive":
                return 200, fake.drive_json(site, next(iter(site.drives))), {}
            return 200, fake._site_json(site), {}
        if m := _ROOT_CHILDREN.match(path):
            return 200, fake.children(self._drive(m.group(1)), "", path, query), {}
        if m := _BY_ID.match(path):
            drive_id = self._drive(m.group(1))
            if method == "DELETE":
                fake.delete(drive_id, item_id=unquote(m.group(2)))
                return 204, None, {}
        if m := _BY_PATH.match(path):
            drive_id, item_path, action = self._drive(m.group(1)), unquote(m.group(2)), m.group(3) or "/"
            item_path = item_path.strip("/")
            if method == "GET" and action == "/":
                return 200, fake.item_json(drive_id, item_path), {}
            if method == "GET" and action == "/children":
                return 200, fake.children(drive_id, item_path, path, query), {}
            if method == "GET" and action == "/content":
                return 302, None, {"Location": fake.download_url(drive_id, item_path)}
            if method == "PUT" and action == "/content":
                mime = headers.get("content-type", "application/octet-stream")
                status, payload = fake.simple_upload(drive_id, item_path, body, mime)
                return status, payload, {}
            if method == "POST" and action == "/createUploadSession":
                return 200, fake.create_session(drive_id, item_path), {}
            if method == "DELETE" and action == "/":
                fake.delete(drive_id, path=item_path)
                return 204, None, {}
        raise GraphError(400, "invalidRequest", "Unsupported request.")

    def _drive(self, drive_id: str) -> str:
        drive_id = unquote(drive_id)
        if drive_id not in self.fake.files:
            raise GraphError(404, "itemNotFound", "The drive could not be found.")
        return drive_id
