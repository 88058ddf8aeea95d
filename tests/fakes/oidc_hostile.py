"""A scriptable, hostile OpenID Connect provider for attack tests of the gateway's OIDC login.

It speaks just enough OIDC for an authorization code + PKCE login, with no login UI:

- GET  /.well-known/openid-configuration   discovery (issuer = its own URL)
- GET  /jwks                               its one RSA signing key (RS256, kid "hostile-1")
- GET  /authorize                          redirects (302) straight back to redirect_uri with code and state
- POST /token                              client_secret_basic or client_secret_post; answers an id_token
- GET  /userinfo                           the claims of the code's user (Bearer access token)

By default everything it issues is CORRECT: iss = its issuer, aud = the client id, nonce = the nonce of the
authorization request, exp in the future, email_verified true. A test makes it lie with a `Tamper`, taken
at /authorize time for the code issued then (`fake.tamper = Tamper(expired=True)`), or set per code later
(`fake.tamper_code(code, Tamper(...))`). `Tamper` switches:

- wrong_issuer       iss is another issuer
- wrong_audience     aud is another client id
- wrong_nonce        nonce is not the one from the authorization request
- expired            exp (and iat) in the past
- unverified_email   email_verified false
- azp_mismatch       aud = [client id, another client], azp = the other client
- multi_aud_no_azp   aud = [client id, another client], no azp
- foreign_key        signed RS256 with a key that is NOT in the JWKS (the header still names the JWKS kid)
- alg_none           header alg "none", empty signature
- state              the state sent back from /authorize instead of the request's one
- claims / omit      claims to set (over everything above) or to leave out

The token endpoint behaves like a strict provider: codes are single use, redirect_uri must repeat the
authorization request's, and PKCE is checked: with a code_challenge at /authorize (S256 only) the
code_verifier must hash to it, else `invalid_grant`; without one, the code is refused (`invalid_grant`)
unless `require_pkce` is False. Every request is recorded (`requests`), and the authorization and token
requests in detail (`authorizations`, `token_requests`: code_verifier received, whether it matched, the
client authentication method, the error answered).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

KID = "hostile-1"
OTHER_AUDIENCE = "someone-else"
OTHER_ISSUER = "https://evil.example.test"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def s256(verifier: str) -> str:
    """The S256 code challenge of a PKCE code verifier (RFC 7636)."""
    return b64url(hashlib.sha256(verifier.encode()).digest())


def public_jwk(key: rsa.RSAPrivateKey, kid: str) -> dict[str, str]:
    numbers = key.public_key().public_numbers()

    def to_b64(value: int) -> str:
        return b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))

    return {
        "kty": "RSA",
        "kid": kid,
        "use": "sig",
        "alg": "RS256",
        "n": to_b64(numbers.n),
        "e": to_b64(numbers.e),
    }


def sign_jwt(header: dict[str, Any], claims: dict[str, Any], key: rsa.RSAPrivateKey | None) -> str:
    """A compact JWS; `key` None leaves the signature empty (for alg "none")."""
    head = b64url(json.dumps(header, separators=(",", ":")).encode())
    body = b64url(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{head}.{body}".encode()
    signature = b"" if key is None else key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    return f"{head}.{body}.{b64url(signature)}"


@dataclass(frozen=True)
class Tamper:
    """What is wrong with the ID token (and the authorization response) of a code. All off: correct."""

    wrong_issuer: bool = False
    wrong_audience: bool = False
    wrong_nonce: bool = False
    expired: bool = False
    unverified_email: bool = False
    azp_mismatch: bool = False
    multi_aud_no_azp: bool = False
    foreign_key: bool = False
    alg_none: bool = False
    state: str | None = None
    claims: dict[str, Any] = field(default_factory=dict)
    omit: frozenset[str] = frozenset()


# Each one-switch Tamper, by the switch's name: for tests that go through all of them.
SWITCHES: dict[str, Tamper] = {
    name: Tamper(**{name: True})
    for name in (
        "wrong_issuer",
        "wrong_audience",
        "wrong_nonce",
        "expired",
        "unverified_email",
        "azp_mismatch",
        "multi_aud_no_azp",
        "foreign_key",
        "alg_none",
    )
}


@dataclass
class Authorization:
    """One /authorize request and the code it produced."""

    code: str
    client_id: str
    redirect_uri: str
    state: str | None
    nonce: str | None
    scope: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    params: dict[str, str]
    tamper: Tamper
    claims: dict[str, Any]
    used: bool = False


@dataclass
class TokenRequest:
    """One /token request, and what the fake made of it."""

    params: dict[str, str]  # the form, client_secret and code_verifier included
    client_id: str | None
    auth_method: str | None  # client_secret_basic, client_secret_post or None
    code: str | None
    code_verifier: str | None
    pkce_ok: bool | None  # None: no code_challenge was sent at /authorize
    error: str | None  # the OAuth error answered, None when tokens were issued
    id_token: str | None = None


@dataclass
class Recorded:
    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]


@dataclass
class HostileOidc:
    client_id: str = "filegate-test"
    client_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    # The user every code logs in; a test may change it (e.g. another email) before /authorize.
    user: dict[str, Any] = field(
        default_factory=lambda: {
            "sub": "hostile-alice",
            "email": "alice@example.test",
            "email_verified": True,
            "name": "Alice (hostile IdP)",
        }
    )
    tamper: Tamper = field(default_factory=Tamper)  # applied to codes issued from now on
    require_pkce: bool = True
    id_token_ttl: int = 300
    # A provider gone hostile: its discovery, JWKS or token endpoint answers 307 to this URL (SSRF tests).
    redirect: dict[str, str] = field(default_factory=dict)  # path -> Location
    # --- what happened --------------------------------------------------------------------------------
    requests: list[Recorded] = field(default_factory=list)
    authorizations: list[Authorization] = field(default_factory=list)
    token_requests: list[TokenRequest] = field(default_factory=list)
    issuer: str = ""

    def __post_init__(self) -> None:
        self._lock = threading.RLock()
        # Its own key (~0.15 s to make): two fakes in one test never verify each other's tokens.
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._foreign_key: rsa.RSAPrivateKey | None = None
        self._codes: dict[str, Authorization] = {}
        self._access_tokens: dict[str, Authorization] = {}

    # --- helpers for tests ----------------------------------------------------------------------------
    @property
    def foreign_key(self) -> rsa.RSAPrivateKey:
        """Signs the foreign_key tokens: the JWKS kid in the header, but a key that is not in the JWKS."""
        if self._foreign_key is None:
            self._foreign_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return self._foreign_key

    @property
    def jwks(self) -> dict[str, Any]:
        return {"keys": [public_jwk(self.key, KID)]}

    def metadata(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "userinfo_endpoint": f"{self.issuer}/userinfo",
            "jwks_uri": f"{self.issuer}/jwks",
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "scopes_supported": ["openid", "email", "profile"],
            "claims_supported": [
                "sub",
                "iss",
                "aud",
                "exp",
                "iat",
                "nonce",
                "email",
                "email_verified",
                "name",
            ],
        }

    def tamper_code(self, code: str, tamper: Tamper) -> None:
        """Change what the (not yet redeemed) `code` will produce."""
        with self._lock:
            self._codes[code].tamper = tamper

    def last_authorization(self) -> Authorization:
        with self._lock:
            return self.authorizations[-1]

    def last_token_request(self) -> TokenRequest:
        with self._lock:
            return self.token_requests[-1]

    def id_token_for(self, authorization: Authorization, tamper: Tamper | None = None) -> str:
        """The ID token the token endpoint gives for `authorization` (with its own or the given tamper)."""
        t = authorization.tamper if tamper is None else tamper
        now = int(time.time())
        claims: dict[str, Any] = {
            **authorization.claims,
            "iss": OTHER_ISSUER if t.wrong_issuer else self.issuer,
            "aud": OTHER_AUDIENCE if t.wrong_audience else authorization.client_id,
            "iat": now - 1200 if t.expired else now,
            "exp": now - 600 if t.expired else now + self.id_token_ttl,
            "auth_time": now - 1200 if t.expired else now,
        }
        if authorization.nonce is not None or t.wrong_nonce:
            claims["nonce"] = (
                "not-" + (authorization.nonce or "the-nonce") if t.wrong_nonce else authorization.nonce
            )
        if t.unverified_email:
            claims["email_verified"] = False
        if t.azp_mismatch or t.multi_aud_no_azp:
            claims["aud"] = [authorization.client_id, OTHER_AUDIENCE]
            if t.azp_mismatch:
                claims["azp"] = OTHER_AUDIENCE
        claims.update(t.claims)
        for name in t.omit:
            claims.pop(name, None)
        if t.alg_none:
            return sign_jwt({"alg": "none", "typ": "JWT"}, claims, None)
        header = {"alg": "RS256", "typ": "JWT", "kid": KID}
        return sign_jwt(header, claims, self.foreign_key if t.foreign_key else self.key)

    # --- the provider ---------------------------------------------------------------------------------
    def handle(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        parts = urlsplit(target)
        params = dict(parse_qsl(parts.query, keep_blank_values=True))
        if method == "POST" and headers.get("content-type", "").startswith(
            "application/x-www-form-urlencoded"
        ):
            params.update(parse_qsl(body.decode(), keep_blank_values=True))
        with self._lock:
            self.requests.append(Recorded(method, parts.path, params, headers))
            if parts.path in self.redirect:
                return 307, {"Location": self.redirect[parts.path]}, b""
            match method, parts.path:
                case "GET", "/.well-known/openid-configuration":
                    return _json(200, self.metadata())
                case "GET", "/jwks":
                    return _json(200, self.jwks)
                case "GET", "/authorize":
                    return self._authorize(params)
                case "POST", "/token":
                    return self._token(params, headers)
                case "GET" | "POST", "/userinfo":
                    return self._userinfo(headers)
            return _json(404, {"error": "not_found"})

    def _authorize(self, params: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        redirect_uri = params.get("redirect_uri", "")
        if params.get("client_id") != self.client_id or not redirect_uri.startswith(("http://", "https://")):
            return _json(
                400, {"error": "invalid_request", "error_description": "unknown client or redirect_uri"}
            )
        code = secrets.token_urlsafe(24)
        authorization = Authorization(
            code=code,
            client_id=self.client_id,
            redirect_uri=redirect_uri,
            state=params.get("state"),
            nonce=params.get("nonce"),
            scope=params.get("scope"),
            code_challenge=params.get("code_challenge"),
            code_challenge_method=params.get("code_challenge_method"),
            params=params,
            tamper=self.tamper,
            claims=dict(self.user),
        )
        self.authorizations.append(authorization)
        self._codes[code] = authorization
        answer = {"code": code}
        state = self.tamper.state if self.tamper.state is not None else authorization.state
        if state is not None:
            answer["state"] = state
        parts = urlsplit(redirect_uri)
        query = f"{parts.query}&{urlencode(answer)}" if parts.query else urlencode(answer)
        return 302, {"Location": urlunsplit(parts._replace(query=query))}, b""

    def _client_auth(
        self, params: dict[str, str], headers: dict[str, str]
    ) -> tuple[str | None, str | None, str | None]:
        """(client_id, secret, method) as the client presented them."""
        header = headers.get("authorization", "")
        if header.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(header[6:].strip()).decode()
            except ValueError:
                return None, None, "client_secret_basic"
            client_id, _, secret = decoded.partition(":")
            return unquote(client_id), unquote(secret), "client_secret_basic"
        if "client_secret" in params:
            return params.get("client_id"), params["client_secret"], "client_secret_post"
        return params.get("client_id"), None, None

    def _token(self, params: dict[str, str], headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        client_id, secret, method = self._client_auth(params, headers)
        code = params.get("code")
        verifier = params.get("code_verifier")
        record = TokenRequest(dict(params), client_id, method, code, verifier, None, None)
        self.token_requests.append(record)

        def refuse(status: int, error: str, description: str) -> tuple[int, dict[str, str], bytes]:
            record.error = error
            return _json(status, {"error": error, "error_description": description})

        if (
            client_id != self.client_id
            or secret is None
            or not secrets.compare_digest(secret, self.client_secret)
        ):
            return refuse(401, "invalid_client", "client authentication failed")
        if params.get("grant_type") != "authorization_code":
            return refuse(400, "unsupported_grant_type", "only authorization_code")
        authorization = self._codes.get(code or "")
        if authorization is None:
            return refuse(400, "invalid_grant", "unknown code")
        if authorization.used:
            return refuse(400, "invalid_grant", "code already used")
        authorization.used = True
        if params.get("redirect_uri") != authorization.redirect_uri:
            return refuse(400, "invalid_grant", "redirect_uri does not match the authorization request")
        if authorization.code_challenge is None:
            if self.require_pkce:
                return refuse(400, "invalid_grant", "PKCE is required: no code_challenge was sent")
        else:
            record.pkce_ok = (
                authorization.code_challenge_method == "S256"
                and verifier is not None
                and secrets.compare_digest(s256(verifier), authorization.code_challenge)
            )
            if not record.pkce_ok:
                return refuse(400, "invalid_grant", "code_verifier does not match code_challenge")
        access_token = secrets.token_urlsafe(24)
        self._access_tokens[access_token] = authorization
        record.id_token = self.id_token_for(authorization)
        return _json(
            200,
            {
                "access_token": access_token,
                "token_type": "Bearer",
                "expires_in": 3600,
                "scope": authorization.scope or "openid",
                "id_token": record.id_token,
            },
        )

    def _userinfo(self, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        header = headers.get("authorization", "")
        authorization = (
            self._access_tokens.get(header[7:].strip()) if header.lower().startswith("bearer ") else None
        )
        if authorization is None:
            return _json(401, {"error": "invalid_token"})
        claims = dict(authorization.claims)
        if authorization.tamper.unverified_email:
            claims["email_verified"] = False
        claims.update(
            {k: v for k, v in authorization.tamper.claims.items() if k not in ("iss", "aud", "exp", "iat")}
        )
        return _json(200, claims)


def _json(status: int, payload: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    headers = {"Content-Type": "application/json", "Cache-Control": "no-store"}
    return status, headers, json.dumps(payload).encode()


def _handler(fake: HostileOidc) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, extra, data = fake.handle(self.command, self.path, headers, body)
            self.send_response(status)
            for name, value in extra.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: the requests are recorded instead

    return Handler


@contextmanager
def running(fake: HostileOidc) -> Iterator[HostileOidc]:
    """Serve `fake` on 127.0.0.1 at a free port (its issuer is `fake.issuer`) for the block."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="hostile-oidc", daemon=True)
    thread.start()
    fake.issuer = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
