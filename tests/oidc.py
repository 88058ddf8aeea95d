"""OpenID Connect providers for the login tests: a real one and a hostile one.

`oidc_provider` (session, one per xdist worker): the certified `oidc-provider` 9.13 (scripts/oidc.sh,
tests/fakes/oidc/provider.mjs) on a free port under /tmp, issuer http://127.0.0.1:<port>. It knows:

- clients `filegate-test` and `other-client` (`CLIENTS`), each registered with the redirect URIs
  http://127.0.0.1/v1/auth/oidc/<name>/callback for every name in `CALLBACK_NAMES`. They are loopback
  ("native") clients, so the provider accepts those URIs on ANY port (RFC 8252 7.3): a gateway served on
  http://127.0.0.1:<its port> uses `callback_uri(its_port, "test")` with no registration step.
- any other redirect URI (the in-process test client's http://testserver.local/..., another path):
  `oidc_provider.register_client(redirect_uri)` registers a new client at runtime (OIDC dynamic
  registration with the provider's initial access token) and answers its `OidcClient(client_id,
  client_secret)`; it works for the rest of the session, no restart.
- users (`USERS`, by username): alice (alice@example.test, verified), bob (bob@other.test, verified),
  eve (eve@example.test, email_verified false). Their subs are opaque ("u-alice-1", ...), not the
  username: a gateway keys accounts on (iss, sub).

Every client: authorization code, PKCE S256 required, client_secret_basic or client_secret_post, scopes
openid email profile, ID tokens RS256 carrying sub, email, email_verified, name (with those scopes),
iss, aud, exp, iat, nonce. Consent is granted automatically.

`login_with_httpx(authorization_url, username, password)` plays the user: it follows the provider's
redirects, fills the login form (`prompt=login`, `login`, `password`; a consent form `prompt=consent` if
one shows) and answers the redirect to the client's callback WITHOUT following it, so a test can pass it
to the gateway, tamper with it or replay it. Pass `client=` (an httpx.Client) to keep the provider's
session cookie between logins (single sign-on, prompt=login tests).

`hostile_oidc` (per test): tests/fakes/oidc_hostile.py, a provider that issues ID tokens with whatever is
wrong that the test asks for (`Tamper`), and records PKCE verifiers.
"""

from __future__ import annotations

import asyncio
import html
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from tests.clamd import free_port
from tests.fakes.oidc_hostile import HostileOidc
from tests.fakes.oidc_hostile import running as running_hostile

ROOT = Path(__file__).resolve().parents[1]
OIDC_SH = ROOT / "scripts" / "oidc.sh"
CALLBACK_NAMES = ("test", "other")
CALLBACK_PATH = "/v1/auth/oidc/{name}/callback"
INITIAL_ACCESS_TOKEN = "filegate-test-registration-0123456789"


class OidcClient(NamedTuple):
    client_id: str
    client_secret: str


@dataclass(frozen=True)
class OidcUser:
    username: str
    sub: str
    email: str
    email_verified: bool
    name: str
    password: str

    @property
    def domain(self) -> str:
        return self.email.rsplit("@", 1)[1]


CLIENTS = {
    "filegate-test": OidcClient("filegate-test", "filegate-test-secret-0123456789"),
    "other-client": OidcClient("other-client", "other-client-secret-0123456789"),
}
USERS = {
    "alice": OidcUser("alice", "u-alice-1", "alice@example.test", True, "Alice Example", "alice-password"),
    "bob": OidcUser("bob", "u-bob-2", "bob@other.test", True, "Bob Other", "bob-password"),
    "eve": OidcUser("eve", "u-eve-3", "eve@example.test", False, "Eve Unverified", "eve-password"),
}


def callback_uri(port: int, name: str = "test", host: str = "127.0.0.1") -> str:
    """The gateway's OIDC callback for provider `name` when it is served at http://host:port."""
    return f"http://{host}:{port}{CALLBACK_PATH.format(name=name)}"


@dataclass(frozen=True)
class RunningOidc:
    dir: Path
    port: int
    clients: dict[str, OidcClient]  # by client_id
    users: dict[str, OidcUser]  # by username
    initial_access_token: str

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    @property
    def client(self) -> OidcClient:
        """The main test client, `filegate-test`."""
        return self.clients["filegate-test"]

    def metadata(self) -> dict[str, Any]:
        response = httpx.get(self.discovery_url, timeout=10)
        response.raise_for_status()
        return dict(response.json())

    def jwks(self) -> dict[str, Any]:
        response = httpx.get(f"{self.issuer}/jwks", timeout=10)
        response.raise_for_status()
        return dict(response.json())

    def register_client(
        self, redirect_uris: str | Sequence[str], *, token_endpoint_auth_method: str = "client_secret_basic"
    ) -> OidcClient:
        """A new client for these exact redirect URIs (dynamic registration); usable at once."""
        uris = [redirect_uris] if isinstance(redirect_uris, str) else list(redirect_uris)
        response = httpx.post(
            f"{self.issuer}/reg",
            json={"redirect_uris": uris, "token_endpoint_auth_method": token_endpoint_auth_method},
            headers={"Authorization": f"Bearer {self.initial_access_token}"},
            timeout=10,
        )
        if response.status_code != 201:
            raise RuntimeError(f"client registration failed: {response.status_code} {response.text}")
        body = response.json()
        return OidcClient(body["client_id"], body["client_secret"])


class OidcLoginError(Exception):
    """The provider did not send the user back to the client (wrong password, bad request, ...)."""


_FORM = re.compile(r"<form\b([^>]*)>(.*?)</form>", re.S | re.I)
_INPUT = re.compile(r"<input\b([^>]*)>", re.I)
_ATTR = re.compile(r"([\w-]+)\s*=\s*\"([^\"]*)\"")


def _forms(page: str) -> list[tuple[str, dict[str, str]]]:
    """(action, {name: value} of the hidden inputs) of each form on the page."""
    forms = []
    for attrs, body in _FORM.findall(page):
        action = html.unescape(dict(_ATTR.findall(attrs)).get("action", ""))
        hidden = {}
        for input_attrs in _INPUT.findall(body):
            attr = dict(_ATTR.findall(input_attrs))
            if attr.get("type") == "hidden" and "name" in attr:
                hidden[attr["name"]] = html.unescape(attr.get("value", ""))
        forms.append((action, hidden))
    return forms


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc


def _text(page: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())[:500]


def login_with_httpx(
    authorization_url: str,
    username: str,
    password: str,
    *,
    client: httpx.Client | None = None,
    max_steps: int = 10,
) -> str:
    """Log `username` in at the provider and answer the URL it redirects to outside itself (the
    client's callback, with code and state, or with error=...), without requesting it."""
    http = client if client is not None else httpx.Client(timeout=10)
    provider = _origin(authorization_url)
    method, url, data = "GET", authorization_url, None
    try:
        for _ in range(max_steps):
            response = http.request(method, url, data=data, follow_redirects=False)
            if response.is_redirect:
                location = urljoin(str(response.url), response.headers["location"])
                if _origin(location) != provider:
                    return location
                method, url, data = "GET", location, None
                continue
            if response.status_code == 401:
                raise OidcLoginError(f"login rejected for {username!r}: {_text(response.text)}")
            forms = _forms(response.text) if response.status_code == 200 else []
            prompt = forms[0][1].get("prompt") if forms else None
            if prompt == "login":
                data = {"prompt": "login", "login": username, "password": password}
            elif prompt == "consent":
                data = {"prompt": "consent"}
            else:
                raise OidcLoginError(f"{response.status_code} from {url}: {_text(response.text)}")
            method, url = "POST", urljoin(str(response.url), forms[0][0])
        raise OidcLoginError(f"no redirect to the client after {max_steps} steps (last: {url})")
    finally:
        if client is None:
            http.close()


async def login_with_httpx_async(authorization_url: str, username: str, password: str) -> str:
    """`login_with_httpx` for async tests (runs it in a thread: the event loop keeps serving)."""
    return await asyncio.to_thread(login_with_httpx, authorization_url, username, password)


def oidc_sh(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(OIDC_SH), *args],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _config() -> dict[str, Any]:
    redirect_uris = [f"http://127.0.0.1{CALLBACK_PATH.format(name=name)}" for name in CALLBACK_NAMES]
    return {
        "clients": [
            {"client_id": c.client_id, "client_secret": c.client_secret, "redirect_uris": redirect_uris}
            for c in CLIENTS.values()
        ],
        "users": [
            {
                "username": u.username,
                "sub": u.sub,
                "email": u.email,
                "email_verified": u.email_verified,
                "name": u.name,
                "password": u.password,
            }
            for u in USERS.values()
        ],
        "initial_access_token": INITIAL_ACCESS_TOKEN,
    }


@pytest.fixture(scope="session")
def oidc_provider(worker_id: str) -> Iterator[RunningOidc]:
    """This worker's oidc-provider (clients CLIENTS, users USERS, runtime registration on)."""
    directory = Path(tempfile.mkdtemp(prefix=f"filegate-oidc-{worker_id}-"))
    config = directory / "config.json"
    config.write_text(json.dumps(_config(), indent=2))
    output = ""
    running: RunningOidc | None = None
    for _ in range(3):  # another process may take the free port first
        port = free_port()
        result = oidc_sh("start", str(directory), str(port), str(config))
        if result.returncode == 0:
            running = RunningOidc(directory, port, dict(CLIENTS), dict(USERS), INITIAL_ACCESS_TOKEN)
            break
        output = result.stdout + result.stderr
        oidc_sh("stop", str(directory))
    if running is None:
        shutil.rmtree(directory, ignore_errors=True)
        pytest.fail(f"scripts/oidc.sh start failed:\n{output}")
    yield running
    result = oidc_sh("stop", str(directory))
    assert result.returncode == 0, result.stdout + result.stderr
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def hostile_oidc() -> Iterator[HostileOidc]:
    """A fresh hostile provider for one test (client `filegate-test`, a random secret)."""
    with running_hostile(HostileOidc()) as fake:
        yield fake
