"""One typed settings object, read once from `FILEGATE_*` environment variables.

Every field has a safe embedded default; `filegate serve` / `filegate worker` refuse to start when a
setting they need is missing (see `Settings.require`). No other module reads `os.environ`.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import msgspec

ENV_PREFIX = "FILEGATE_"
MAX_ACCESS_TOKEN_TTL = 900
SECRET_SETTINGS = frozenset(
    {"DATABASE_URL", "MIGRATE_DATABASE_URL", "REDIS_URL", "OPERATOR_TOKEN", "METRICS_TOKEN", "KEYRING"}
)
"""Settings that carry credentials: each can also be read from the file `FILEGATE_<NAME>_FILE` names, as
container secrets are mounted (a value in the environment shows in `docker inspect` and /proc)."""


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable, never its value."""


class DatabaseSettings(msgspec.Struct, frozen=True, kw_only=True):
    url: str | None = None
    """FILEGATE_DATABASE_URL: the app role's URL (postgresql+asyncpg://filegate_app@host/db)."""
    migrate_url: str | None = None
    """FILEGATE_MIGRATE_DATABASE_URL: the schema owner's URL, used only by `filegate migrate`."""
    app_role: str = "filegate_app"
    """FILEGATE_DATABASE_APP_ROLE: the role the migrations grant to; it owns no table."""
    pool_size: int = 10
    """FILEGATE_DATABASE_POOL_SIZE connections per process (and as many again in overflow)."""
    pool_timeout: int = 10
    """FILEGATE_DATABASE_POOL_TIMEOUT seconds a request waits for a pooled connection before it is answered
    503 `service_unavailable` with Retry-After."""


class RedisSettings(msgspec.Struct, frozen=True, kw_only=True):
    url: str | None = None
    """FILEGATE_REDIS_URL."""
    key_prefix: str = "fg:"
    """FILEGATE_REDIS_KEY_PREFIX: lets several deployments (or test runs) share one Redis."""


class AuthSettings(msgspec.Struct, frozen=True, kw_only=True):
    access_token_ttl: int = 900
    """FILEGATE_ACCESS_TOKEN_TTL seconds (at most 900)."""
    refresh_token_ttl: int = 30 * 24 * 3600
    """FILEGATE_REFRESH_TOKEN_TTL seconds."""
    jwt_keyring: Path | None = None
    """FILEGATE_JWT_KEYRING: JSON file of Ed25519 signing keys (generated in embedded mode)."""
    issuer: str = "filegate"
    """FILEGATE_JWT_ISSUER."""
    audience: str = "filegate-api"
    """FILEGATE_JWT_AUDIENCE."""
    lockout_threshold: int = 5
    """FILEGATE_LOCKOUT_THRESHOLD consecutive failures lock an account."""
    lockout_seconds: int = 900
    """FILEGATE_LOCKOUT_SECONDS."""
    login_ip_limit: int = 30
    """FILEGATE_LOGIN_IP_LIMIT login attempts per minute per client address."""
    login_account_limit: int = 10
    """FILEGATE_LOGIN_ACCOUNT_LIMIT login attempts per minute per tenant+email."""
    refresh_ip_limit: int = 60
    """FILEGATE_REFRESH_IP_LIMIT refreshes per minute per client address."""
    operator_token: str | None = None
    """FILEGATE_OPERATOR_TOKEN: unset disables the operator API (the CLI still works)."""
    operator_failure_limit: int = 10
    """FILEGATE_OPERATOR_FAILURE_LIMIT wrong operator tokens per client address per 15 minutes; then 429."""
    keyring: str | None = None
    """FILEGATE_KEYRING: credential-manager keys, a JSON file's path or the JSON itself (generated in
    embedded mode; required in production)."""
    session_idle: int = 1800
    """FILEGATE_SESSION_IDLE seconds a browser session lives without use."""
    session_max: int = 12 * 3600
    """FILEGATE_SESSION_MAX seconds a browser session lives at most, used or not."""
    argon2_time_cost: int = 2
    """FILEGATE_ARGON2_TIME_COST (OWASP: m=19 MiB, t=2, p=1)."""
    argon2_memory_kib: int = 19456
    """FILEGATE_ARGON2_MEMORY_KIB."""


class ScanningSettings(msgspec.Struct, frozen=True, kw_only=True):
    clamd_url: str | None = None
    """FILEGATE_CLAMD_URL: tcp://host:port or unix:///path; unset means no scanner (uploads wait)."""
    quarantine_url: str | None = None
    """FILEGATE_QUARANTINE_URL: file:///path (default <data dir>/quarantine), or s3://bucket[/prefix] for a
    quarantine shared by gateways and workers on several hosts (objects <prefix>/<tenant_id>/<upload_id>;
    credentials from boto3's default chain: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, AWS_PROFILE,
    an instance or task role)."""
    quarantine_endpoint: str | None = None
    """FILEGATE_QUARANTINE_ENDPOINT: the S3 endpoint URL (http[s]://host:port) for anything but AWS
    (SeaweedFS, MinIO, Ceph; path-style addressing); unset means AWS S3."""
    quarantine_region: str = "us-east-1"
    """FILEGATE_QUARANTINE_REGION: the S3 region of the quarantine bucket."""
    max_tries: int = 8
    """FILEGATE_SCAN_MAX_TRIES before an upload whose scanner keeps failing becomes scan_failed."""
    retry_base: float = 5.0
    """FILEGATE_SCAN_RETRY_BASE seconds; retries back off exponentially from it (capped at 10 minutes)."""
    job_timeout: int = 300
    """FILEGATE_SCAN_JOB_TIMEOUT seconds for a job (every job's timeout is capped by it); a killed worker's
    job is retried by another worker this long + 10 s after it started."""
    reconcile_grace: int = 60
    """FILEGATE_RECONCILE_GRACE seconds before a pending job is re-enqueued by the reconciler."""
    reconcile_every: int = 30
    """FILEGATE_RECONCILE_EVERY seconds between reconciler runs in the worker."""
    tus_expiry: int = 24 * 3600
    """FILEGATE_TUS_EXPIRY seconds an unfinished tus upload is kept."""


class ConnectorSettings(msgspec.Struct, frozen=True, kw_only=True):
    allow_private: bool = False
    """FILEGATE_CONNECTOR_ALLOW_PRIVATE: may a tenant point a connector (S3 endpoint_url, Azure account_url)
    at a private, loopback or link-local address? Off by default (the gateway's own network is not a
    tenant's storage); on for local S3-compatible servers and Azurite in development."""
    login_url: str = "https://login.microsoftonline.com"
    """FILEGATE_MS_LOGIN_URL: Microsoft identity platform base URL (SharePoint app-only tokens)."""
    graph_url: str = "https://graph.microsoft.com"
    """FILEGATE_MS_GRAPH_URL: Microsoft Graph base URL (SharePoint drives)."""
    instagram_url: str = "https://graph.instagram.com"
    """FILEGATE_INSTAGRAM_GRAPH_URL: Instagram Graph API base URL."""
    ca_bundle: str | None = None
    """FILEGATE_CONNECTOR_CA_BUNDLE: a PEM file of extra CAs to trust for the Microsoft endpoints."""
    instagram_poll_ms: int = 2000
    """FILEGATE_INSTAGRAM_POLL_MS: first interval between media-container status polls (then x1.5)."""
    instagram_max_wait: int = 120
    """FILEGATE_INSTAGRAM_MAX_WAIT seconds a publish waits for its container before giving up (retryable)."""
    azure_api_version: str | None = None
    """FILEGATE_AZURE_API_VERSION: pin the Azure Storage API version (Azurite needs an older one)."""
    delivery_max_tries: int = 6
    """FILEGATE_DELIVERY_MAX_TRIES before a delivery that keeps failing becomes delivery_failed."""
    delivery_retry_base: float = 5.0
    """FILEGATE_DELIVERY_RETRY_BASE_MS/1000 seconds; delivery retries back off exponentially from it."""
    media_url_ttl: int = 900
    """FILEGATE_MEDIA_URL_TTL seconds a signed media URL (fetched by the Instagram Graph API) is valid."""
    token_refresh_days: int = 7
    """FILEGATE_TOKEN_REFRESH_DAYS: refresh a long-lived connector token this many days before it expires."""
    timeout: int = 30
    """FILEGATE_CONNECTOR_TIMEOUT seconds a call to a tenant's service may take in total (a streamed
    transfer: between two chunks; an Instagram publish: FILEGATE_INSTAGRAM_MAX_WAIT more); then 504
    `connector_timeout` (a delivery retries)."""
    concurrency_per_tenant: int = 8
    """FILEGATE_CONNECTOR_CONCURRENCY_PER_TENANT calls to its services one tenant may have in flight in one
    process; more is refused at once with 429 `connector_busy` (a delivery waits and retries)."""


class ServerSettings(msgspec.Struct, frozen=True, kw_only=True):
    host: str = "127.0.0.1"
    """FILEGATE_HOST."""
    port: int = 8080
    """FILEGATE_PORT."""
    workers: int = 1
    """FILEGATE_WORKERS: gateway processes for `filegate serve`."""
    data_dir: Path = Path("var")
    """FILEGATE_DATA_DIR: embedded servers, keys and local storage live here."""
    public_url: str | None = None
    """FILEGATE_PUBLIC_URL: https://... turns on HSTS."""
    trusted_proxies: tuple[str, ...] = ()
    """FILEGATE_TRUSTED_PROXIES: comma-separated CIDRs whose X-Forwarded-For is believed."""
    max_body_size: int = 1024 * 1024
    """FILEGATE_MAX_BODY_SIZE bytes for JSON request bodies."""
    body_idle_timeout: int = 30
    """FILEGATE_BODY_IDLE_TIMEOUT seconds: a request body (JSON or upload) that sends nothing for this long
    is cut with 408 `request_timeout`; a cut upload is cleaned up like a disconnected one."""
    body_min_rate: int = 1024
    """FILEGATE_BODY_MIN_RATE bytes per second a request body must average once it has run for
    FILEGATE_BODY_IDLE_TIMEOUT seconds (a trickle is cut like a stall, 408); 0 turns the check off."""
    header_read_timeout: int = 10
    """FILEGATE_HEADER_READ_TIMEOUT seconds to receive a request's headers; an idle keep-alive connection
    waiting for its next request is closed after the same time."""
    metrics_token: str | None = None
    """FILEGATE_METRICS_TOKEN: bearer token for /metrics when set."""
    log_level: str = "INFO"
    """FILEGATE_LOG_LEVEL."""
    mode: Literal["embedded", "production"] = "embedded"
    """FILEGATE_MODE: production refuses to generate missing keys."""


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    database: DatabaseSettings = DatabaseSettings()
    redis: RedisSettings = RedisSettings()
    auth: AuthSettings = AuthSettings()
    server: ServerSettings = ServerSettings()
    scanning: ScanningSettings = ScanningSettings()
    connectors: ConnectorSettings = ConnectorSettings()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read every `FILEGATE_*` variable once; unknown values are refused with the variable's name."""
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(ENV_PREFIX + name) or None
            if name in SECRET_SETTINGS:
                return _secret(env, name, value)
            return value

        def integer(name: str, default: int, *, minimum: int = 0, maximum: int | None = None) -> int:
            raw = get(name)
            if raw is None:
                return default
            try:
                value = int(raw)
            except ValueError:
                raise SettingsError(f"{ENV_PREFIX}{name} must be an integer") from None
            if value < minimum or (maximum is not None and value > maximum):
                raise SettingsError(f"{ENV_PREFIX}{name} must be between {minimum} and {maximum}")
            return value

        proxies = tuple(p.strip() for p in (get("TRUSTED_PROXIES") or "").split(",") if p.strip())
        for cidr in proxies:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise SettingsError(f"{ENV_PREFIX}TRUSTED_PROXIES has an invalid network") from None
        mode = get("MODE") or "embedded"
        if mode not in ("embedded", "production"):
            raise SettingsError(f"{ENV_PREFIX}MODE must be 'embedded' or 'production'")
        keyring = get("JWT_KEYRING")
        return cls(
            database=DatabaseSettings(
                url=get("DATABASE_URL"),
                migrate_url=get("MIGRATE_DATABASE_URL"),
                app_role=get("DATABASE_APP_ROLE") or "filegate_app",
                pool_size=integer("DATABASE_POOL_SIZE", 10, minimum=1),
                pool_timeout=integer("DATABASE_POOL_TIMEOUT", 10, minimum=1, maximum=300),
            ),
            redis=RedisSettings(url=get("REDIS_URL"), key_prefix=get("REDIS_KEY_PREFIX") or "fg:"),
            auth=AuthSettings(
                access_token_ttl=integer("ACCESS_TOKEN_TTL", 900, minimum=30, maximum=MAX_ACCESS_TOKEN_TTL),
                refresh_token_ttl=integer("REFRESH_TOKEN_TTL", 30 * 24 * 3600, minimum=60),
                jwt_keyring=Path(keyring) if keyring else None,
                issuer=get("JWT_ISSUER") or get("PUBLIC_URL") or "filegate",
                audience=get("JWT_AUDIENCE") or "filegate-api",
                lockout_threshold=integer("LOCKOUT_THRESHOLD", 5, minimum=1),
                lockout_seconds=integer("LOCKOUT_SECONDS", 900, minimum=1),
                login_ip_limit=integer("LOGIN_IP_LIMIT", 30, minimum=1),
                login_account_limit=integer("LOGIN_ACCOUNT_LIMIT", 10, minimum=1),
                refresh_ip_limit=integer("REFRESH_IP_LIMIT", 60, minimum=1),
                operator_token=get("OPERATOR_TOKEN"),
                operator_failure_limit=integer("OPERATOR_FAILURE_LIMIT", 10, minimum=1),
                keyring=get("KEYRING"),
                session_idle=integer("SESSION_IDLE", 1800, minimum=60),
                session_max=integer("SESSION_MAX", 12 * 3600, minimum=300, maximum=30 * 24 * 3600),
                argon2_time_cost=integer("ARGON2_TIME_COST", 2, minimum=1),
                argon2_memory_kib=integer("ARGON2_MEMORY_KIB", 19456, minimum=8),
            ),
            scanning=ScanningSettings(
                clamd_url=_clamd_url(get("CLAMD_URL")),
                quarantine_url=_quarantine_url(get("QUARANTINE_URL")),
                quarantine_endpoint=_endpoint_url(get("QUARANTINE_ENDPOINT")),
                quarantine_region=_region(get("QUARANTINE_REGION")),
                max_tries=integer("SCAN_MAX_TRIES", 8, minimum=1),
                retry_base=float(integer("SCAN_RETRY_BASE_MS", 5000, minimum=1)) / 1000,
                job_timeout=integer("SCAN_JOB_TIMEOUT", 300, minimum=2),
                reconcile_grace=integer("RECONCILE_GRACE", 60, minimum=0),
                reconcile_every=integer("RECONCILE_EVERY", 30, minimum=1),
                tus_expiry=integer("TUS_EXPIRY", 24 * 3600, minimum=60),
            ),
            connectors=ConnectorSettings(
                allow_private=_flag(get("CONNECTOR_ALLOW_PRIVATE"), "CONNECTOR_ALLOW_PRIVATE"),
                login_url=_base_url(get("MS_LOGIN_URL"), "MS_LOGIN_URL")
                or "https://login.microsoftonline.com",
                graph_url=_base_url(get("MS_GRAPH_URL"), "MS_GRAPH_URL") or "https://graph.microsoft.com",
                instagram_url=_base_url(get("INSTAGRAM_GRAPH_URL"), "INSTAGRAM_GRAPH_URL")
                or "https://graph.instagram.com",
                azure_api_version=get("AZURE_API_VERSION"),
                ca_bundle=get("CONNECTOR_CA_BUNDLE"),
                instagram_poll_ms=integer("INSTAGRAM_POLL_MS", 2000, minimum=10),
                instagram_max_wait=integer("INSTAGRAM_MAX_WAIT", 120, minimum=1, maximum=900),
                delivery_max_tries=integer("DELIVERY_MAX_TRIES", 6, minimum=1),
                delivery_retry_base=float(integer("DELIVERY_RETRY_BASE_MS", 5000, minimum=1)) / 1000,
                media_url_ttl=integer("MEDIA_URL_TTL", 900, minimum=30, maximum=3600),
                token_refresh_days=integer("TOKEN_REFRESH_DAYS", 7, minimum=1, maximum=50),
                timeout=integer("CONNECTOR_TIMEOUT", 30, minimum=1, maximum=600),
                concurrency_per_tenant=integer("CONNECTOR_CONCURRENCY_PER_TENANT", 8, minimum=1),
            ),
            server=ServerSettings(
                host=get("HOST") or "127.0.0.1",
                port=integer("PORT", 8080, minimum=1, maximum=65535),
                workers=integer("WORKERS", 1, minimum=1),
                data_dir=Path(get("DATA_DIR") or "var"),
                public_url=get("PUBLIC_URL"),
                trusted_proxies=proxies,
                max_body_size=integer("MAX_BODY_SIZE", 1024 * 1024, minimum=1024),
                body_idle_timeout=integer("BODY_IDLE_TIMEOUT", 30, minimum=1, maximum=3600),
                body_min_rate=integer("BODY_MIN_RATE", 1024, minimum=0),
                header_read_timeout=integer("HEADER_READ_TIMEOUT", 10, minimum=1, maximum=3600),
                metrics_token=get("METRICS_TOKEN"),
                log_level=(get("LOG_LEVEL") or "INFO").upper(),
                mode=mode,  # type: ignore[arg-type]
            ),
        )

    def require(self, *names: str) -> None:
        """Refuse to start without the named settings, naming every missing variable."""
        present = {
            "DATABASE_URL": self.database.url,
            "MIGRATE_DATABASE_URL": self.database.migrate_url,
            "REDIS_URL": self.redis.url,
            "JWT_KEYRING": self.auth.jwt_keyring,
            "KEYRING": self.auth.keyring,
        }
        missing = [ENV_PREFIX + n for n in names if not present.get(n)]
        if missing:
            raise SettingsError("missing required settings: " + ", ".join(missing))

    @property
    def quarantine_root(self) -> Path:
        """The local quarantine's directory (when FILEGATE_QUARANTINE_URL is not an s3:// URL)."""
        url = self.scanning.quarantine_url
        if url and url.startswith("file://"):
            return Path(url.removeprefix("file://"))
        return self.server.data_dir / "quarantine"

    @property
    def scan_scratch(self) -> Path:
        """Where a worker copies an object of a remote quarantine to scan it (private temporary dirs)."""
        return self.server.data_dir / "scan-tmp"

    @property
    def behind_tls(self) -> bool:
        return bool(self.server.public_url and self.server.public_url.startswith("https://"))


def _secret(env: Mapping[str, str], name: str, value: str | None) -> str | None:
    """The secret from the variable or the file `<NAME>_FILE` names; both set is refused (which one would
    win is a guess an operator should not have to make)."""
    variable, file_variable = ENV_PREFIX + name, ENV_PREFIX + name + "_FILE"
    path = env.get(file_variable) or None
    if path is None:
        return value
    if value is not None:
        raise SettingsError(f"set {variable} or {file_variable}, not both")
    try:
        content = Path(path).read_text()
    except (OSError, UnicodeDecodeError):
        raise SettingsError(f"{file_variable} must name a readable UTF-8 file") from None
    return content.rstrip("\r\n") or None


def _clamd_url(value: str | None) -> str | None:
    if value is not None and not value.startswith(("tcp://", "unix://")):
        raise SettingsError(f"{ENV_PREFIX}CLAMD_URL must be tcp://host:port or unix:///path")
    return value


_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_OBJECT_PREFIX = re.compile(r"[A-Za-z0-9!_.*'()-]+(/[A-Za-z0-9!_.*'()-]+)*")
_REGION = re.compile(r"[a-z0-9-]{1,40}")


def _quarantine_url(value: str | None) -> str | None:
    if value is None or value.startswith("file:///"):
        return value
    if value.startswith("s3://"):
        bucket, _, prefix = value.removeprefix("s3://").partition("/")
        prefix = prefix.strip("/")
        if _BUCKET.fullmatch(bucket) and (
            not prefix or (_OBJECT_PREFIX.fullmatch(prefix) and ".." not in prefix.split("/"))
        ):
            return f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
    raise SettingsError(f"{ENV_PREFIX}QUARANTINE_URL must be file:///absolute/path or s3://bucket[/prefix]")


def _endpoint_url(value: str | None) -> str | None:
    if value is not None and not re.fullmatch(r"https?://[^/\s]+/?", value):
        raise SettingsError(f"{ENV_PREFIX}QUARANTINE_ENDPOINT must be http[s]://host[:port]")
    return value


def _region(value: str | None) -> str:
    if value is None:
        return "us-east-1"
    if not _REGION.fullmatch(value):
        raise SettingsError(f"{ENV_PREFIX}QUARANTINE_REGION must be an S3 region name such as eu-west-1")
    return value


def _flag(value: str | None, name: str) -> bool:
    if value is None:
        return False
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{ENV_PREFIX}{name} must be true or false")


def _base_url(value: str | None, name: str) -> str | None:
    if value is None:
        return None
    if not value.startswith(("http://", "https://")):
        raise SettingsError(f"{ENV_PREFIX}{name} must be an http(s) URL")
    return value.rstrip("/")
