"""The OIDC providers of the tests work with authlib: the real oidc-provider and the hostile fake.

`validate_id_token` is the check a relying party must make (signature against the JWKS, iss, aud, exp,
nonce, azp, email_verified); the hostile provider's tokens must each fail it for the right reason, and
its correct token must pass.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import httpx
import pytest
from authlib.common.security import generate_token
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.httpx_client import AsyncOAuth2Client
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from joserfc.jwt import JWTClaimsRegistry

from tests.fakes.oidc_hostile import OTHER_AUDIENCE, OTHER_ISSUER, SWITCHES, HostileOidc, Tamper, s256
from tests.oidc import (
    USERS,
    OidcClient,
    OidcLoginError,
    RunningOidc,
    callback_uri,
    login_with_httpx,
    login_with_httpx_async,
)

SCOPE = "openid email profile"


class RejectedIdToken(Exception):
    pass


def validate_id_token(
    id_token: str, jwks: dict[str, Any], *, issuer: str, client_id: str, nonce: str
) -> dict[str, Any]:
    """The claims of `id_token` if a careful relying party would accept it; else RejectedIdToken."""
    try:
        token = jwt.decode(id_token, KeySet.import_key_set(jwks), algorithms=["RS256"])
        claims = dict(token.claims)
        JWTClaimsRegistry(
            iss={"essential": True, "value": issuer},
            aud={"essential": True, "value": client_id},
            sub={"essential": True},
            exp={"essential": True},
            iat={"essential": True},
            nonce={"essential": True, "value": nonce},
        ).validate(claims)
    except (JoseError, ValueError) as exc:
        raise RejectedIdToken(f"{type(exc).__name__}: {exc}") from exc
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    if (len(audiences) > 1 or "azp" in claims) and claims.get("azp") != client_id:
        raise RejectedIdToken("azp is not this client")
    if claims.get("email_verified") is not True:
        raise RejectedIdToken("email not verified")
    return claims


def oauth_client(client: OidcClient, redirect_uri: str, **kwargs: Any) -> AsyncOAuth2Client:
    return AsyncOAuth2Client(
        client.client_id,
        client.client_secret,
        scope=SCOPE,
        redirect_uri=redirect_uri,
        code_challenge_method="S256",
        **kwargs,
    )


async def login(
    provider: RunningOidc,
    client: OidcClient,
    redirect_uri: str,
    username: str,
    *,
    auth_method: str = "client_secret_basic",
) -> tuple[dict[str, Any], str]:
    """A full code + PKCE login through authlib: (token response, nonce)."""
    meta = provider.metadata()
    verifier, nonce = generate_token(48), generate_token(20)
    async with oauth_client(client, redirect_uri, token_endpoint_auth_method=auth_method) as oauth:
        url, state = oauth.create_authorization_url(
            meta["authorization_endpoint"], code_verifier=verifier, nonce=nonce
        )
        callback = await login_with_httpx_async(url, username, provider.users[username].password)
        assert callback.startswith(redirect_uri + "?")
        params = dict(httpx.URL(callback).params)
        assert params["state"] == state
        assert params["iss"] == provider.issuer  # RFC 9207
        token = await oauth.fetch_token(
            meta["token_endpoint"], authorization_response=callback, code_verifier=verifier, state=state
        )
    return dict(token), nonce


# --- the real provider (oidc-provider) ------------------------------------------------------------------


async def test_code_flow_with_pkce_for_alice(oidc_provider: RunningOidc) -> None:
    # A loopback client: the registered http://127.0.0.1/... callback is accepted on any port.
    redirect_uri = callback_uri(54321)
    t0 = time.monotonic()
    token, nonce = await login(oidc_provider, oidc_provider.client, redirect_uri, "alice")
    assert time.monotonic() - t0 < 5
    claims = validate_id_token(
        token["id_token"],
        oidc_provider.jwks(),
        issuer=oidc_provider.issuer,
        client_id="filegate-test",
        nonce=nonce,
    )
    alice = USERS["alice"]
    assert claims["sub"] == alice.sub
    assert claims["email"] == "alice@example.test"
    assert claims["email_verified"] is True
    assert claims["name"] == alice.name
    assert jwt.decode(token["id_token"], KeySet.import_key_set(oidc_provider.jwks())).header["alg"] == "RS256"


async def test_client_secret_post_and_unverified_email(oidc_provider: RunningOidc) -> None:
    token, nonce = await login(
        oidc_provider,
        oidc_provider.clients["other-client"],
        callback_uri(40001, "other"),
        "eve",
        auth_method="client_secret_post",
    )
    with pytest.raises(RejectedIdToken, match="email not verified"):
        validate_id_token(
            token["id_token"],
            oidc_provider.jwks(),
            issuer=oidc_provider.issuer,
            client_id="other-client",
            nonce=nonce,
        )
    claims = jwt.decode(token["id_token"], KeySet.import_key_set(oidc_provider.jwks())).claims
    assert claims["email"] == "eve@example.test"
    assert claims["email_verified"] is False


async def test_wrong_code_verifier_gets_invalid_grant(oidc_provider: RunningOidc) -> None:
    meta = oidc_provider.metadata()
    redirect_uri = callback_uri(40002)
    async with oauth_client(oidc_provider.client, redirect_uri) as oauth:
        url, state = oauth.create_authorization_url(
            meta["authorization_endpoint"], code_verifier=generate_token(48), nonce="n-1"
        )
        callback = await login_with_httpx_async(url, "alice", USERS["alice"].password)
        with pytest.raises(OAuthError) as caught:
            await oauth.fetch_token(
                meta["token_endpoint"],
                authorization_response=callback,
                code_verifier=generate_token(48),
                state=state,
            )
    assert caught.value.error == "invalid_grant"


async def test_code_is_single_use(oidc_provider: RunningOidc) -> None:
    meta = oidc_provider.metadata()
    redirect_uri = callback_uri(40003)
    verifier = generate_token(48)
    async with oauth_client(oidc_provider.client, redirect_uri) as oauth:
        url, state = oauth.create_authorization_url(
            meta["authorization_endpoint"], code_verifier=verifier, nonce="n-2"
        )
        callback = login_with_httpx(url, "bob", USERS["bob"].password)
        await oauth.fetch_token(
            meta["token_endpoint"], authorization_response=callback, code_verifier=verifier, state=state
        )
        with pytest.raises(OAuthError) as caught:
            await oauth.fetch_token(
                meta["token_endpoint"], authorization_response=callback, code_verifier=verifier, state=state
            )
    assert caught.value.error == "invalid_grant"


def test_wrong_password_and_unknown_user_are_rejected(oidc_provider: RunningOidc) -> None:
    url = _authorization_url(oidc_provider, oidc_provider.client, callback_uri(40004))
    with pytest.raises(OidcLoginError, match="Invalid login or password"):
        login_with_httpx(url, "alice", "not-her-password")
    with pytest.raises(OidcLoginError, match="Invalid login or password"):
        login_with_httpx(url, "mallory", "whatever")


def test_login_by_email_and_single_sign_on(oidc_provider: RunningOidc) -> None:
    redirect_uri = callback_uri(40005)
    with httpx.Client(timeout=10) as browser:
        first = login_with_httpx(
            _authorization_url(oidc_provider, oidc_provider.client, redirect_uri),
            "ALICE@example.test",
            USERS["alice"].password,
            client=browser,
        )
        assert "code=" in first
        # The provider's session cookie logs her in again without the form (the password is not asked).
        again = login_with_httpx(
            _authorization_url(oidc_provider, oidc_provider.client, redirect_uri),
            "alice",
            "-",
            client=browser,
        )
        assert "code=" in again
        with pytest.raises(OidcLoginError):
            login_with_httpx(
                _authorization_url(oidc_provider, oidc_provider.client, redirect_uri, prompt="login"),
                "alice",
                "-",
                client=browser,
            )


def test_unregistered_redirect_uri_is_refused(oidc_provider: RunningOidc) -> None:
    url = _authorization_url(oidc_provider, oidc_provider.client, callback_uri(40006, "not-registered"))
    with pytest.raises(OidcLoginError, match="redirect_uri"):
        login_with_httpx(url, "alice", USERS["alice"].password)


def test_pkce_is_required(oidc_provider: RunningOidc) -> None:
    redirect_uri = callback_uri(40007)
    url = _authorization_url(oidc_provider, oidc_provider.client, redirect_uri, pkce=False)
    callback = login_with_httpx(url, "alice", USERS["alice"].password)
    params = dict(httpx.URL(callback).params)
    assert callback.startswith(redirect_uri)
    assert params["error"] == "invalid_request"
    assert "PKCE" in params["error_description"]


async def test_runtime_registered_client(oidc_provider: RunningOidc) -> None:
    redirect_uri = "http://testserver.local/v1/auth/oidc/acme/callback"
    client = oidc_provider.register_client(redirect_uri, token_endpoint_auth_method="client_secret_post")
    token, nonce = await login(oidc_provider, client, redirect_uri, "bob", auth_method="client_secret_post")
    claims = validate_id_token(
        token["id_token"],
        oidc_provider.jwks(),
        issuer=oidc_provider.issuer,
        client_id=client.client_id,
        nonce=nonce,
    )
    assert claims["email"] == "bob@other.test"
    # The static client does not get that redirect URI.
    with pytest.raises(OidcLoginError, match="redirect_uri"):
        login_with_httpx(
            _authorization_url(oidc_provider, oidc_provider.client, redirect_uri),
            "bob",
            USERS["bob"].password,
        )


def _authorization_url(
    provider: RunningOidc, client: OidcClient, redirect_uri: str, *, pkce: bool = True, **extra: str
) -> str:
    params = {
        "client_id": client.client_id,
        "response_type": "code",
        "scope": SCOPE,
        "redirect_uri": redirect_uri,
        "state": generate_token(16),
        "nonce": generate_token(16),
        **extra,
    }
    if pkce:
        params |= {"code_challenge": s256(generate_token(48)), "code_challenge_method": "S256"}
    return str(httpx.URL(f"{provider.issuer}/auth", params=params))


# --- the hostile provider -------------------------------------------------------------------------------


async def hostile_login(
    fake: HostileOidc, *, verifier: str | None = None, redirect_uri: str = "http://127.0.0.1:40100/cb"
) -> tuple[dict[str, Any], str, str]:
    """(token response, nonce, callback URL) of a code + PKCE login at the hostile provider."""
    sent_verifier = generate_token(48)
    nonce = generate_token(20)
    client = OidcClient(fake.client_id, fake.client_secret)
    async with oauth_client(client, redirect_uri) as oauth:
        url, state = oauth.create_authorization_url(
            f"{fake.issuer}/authorize", code_verifier=sent_verifier, nonce=nonce
        )
        async with httpx.AsyncClient() as http:
            answer = await http.get(url)
        assert answer.status_code == 302
        callback = answer.headers["location"]
        token = await oauth.fetch_token(
            f"{fake.issuer}/token",
            authorization_response=callback,
            code_verifier=verifier or sent_verifier,
            state=state,
        )
    return dict(token), nonce, callback


async def test_hostile_correct_token_validates(hostile_oidc: HostileOidc) -> None:
    token, nonce, _ = await hostile_login(hostile_oidc)
    claims = validate_id_token(
        token["id_token"],
        hostile_oidc.jwks,
        issuer=hostile_oidc.issuer,
        client_id="filegate-test",
        nonce=nonce,
    )
    assert claims["email"] == "alice@example.test"
    assert claims["email_verified"] is True
    authorization = hostile_oidc.last_authorization()
    request = hostile_oidc.last_token_request()
    assert authorization.code_challenge_method == "S256"
    assert request.code_verifier is not None
    assert s256(request.code_verifier) == authorization.code_challenge
    assert request.pkce_ok is True
    assert request.auth_method == "client_secret_basic"
    async with httpx.AsyncClient() as http:
        discovered = (await http.get(f"{hostile_oidc.issuer}/.well-known/openid-configuration")).json()
    assert discovered["issuer"] == hostile_oidc.issuer


# Per switch: what the token shows, and why validate_id_token refuses it.
EXPECTED: dict[str, tuple[Any, str]] = {
    "wrong_issuer": (lambda c: c["iss"] == OTHER_ISSUER, "claim: 'iss'"),
    "wrong_audience": (lambda c: c["aud"] == OTHER_AUDIENCE, "claim: 'aud'"),
    "wrong_nonce": (lambda c: c["nonce"].startswith("not-"), "claim: 'nonce'"),
    "expired": (lambda c: c["exp"] < time.time(), "ExpiredTokenError"),
    "unverified_email": (lambda c: c["email_verified"] is False, "email not verified"),
    "azp_mismatch": (
        lambda c: c["aud"] == ["filegate-test", OTHER_AUDIENCE] and c["azp"] == OTHER_AUDIENCE,
        "azp is not this client",
    ),
    "multi_aud_no_azp": (lambda c: len(c["aud"]) == 2 and "azp" not in c, "azp is not this client"),
    "foreign_key": (lambda c: c["iss"].startswith("http://127.0.0.1:"), "BadSignatureError"),
    "alg_none": (lambda c: c["sub"] == "hostile-alice", "UnsupportedAlgorithmError"),
}


@pytest.mark.parametrize("switch", sorted(SWITCHES))
async def test_hostile_switch_produces_a_token_that_fails_validation(
    hostile_oidc: HostileOidc, switch: str
) -> None:
    hostile_oidc.tamper = SWITCHES[switch]
    token, nonce, _ = await hostile_login(hostile_oidc)
    header, claims = _unverified(token["id_token"])
    shows, reason = EXPECTED[switch]
    assert shows(claims), claims
    assert header["alg"] == ("none" if switch == "alg_none" else "RS256")
    with pytest.raises(RejectedIdToken, match=reason):
        validate_id_token(
            token["id_token"],
            hostile_oidc.jwks,
            issuer=hostile_oidc.issuer,
            client_id="filegate-test",
            nonce=nonce,
        )


async def test_hostile_wrong_verifier_gets_invalid_grant(hostile_oidc: HostileOidc) -> None:
    with pytest.raises(OAuthError) as caught:
        await hostile_login(hostile_oidc, verifier=generate_token(48))
    assert caught.value.error == "invalid_grant"
    assert hostile_oidc.last_token_request().pkce_ok is False


async def test_hostile_state_and_per_code_tamper(hostile_oidc: HostileOidc) -> None:
    hostile_oidc.tamper = Tamper(state="attacker-state", claims={"email": "ceo@example.test"})
    async with httpx.AsyncClient() as http:
        answer = await http.get(
            f"{hostile_oidc.issuer}/authorize",
            params={
                "client_id": "filegate-test",
                "redirect_uri": "http://127.0.0.1:40101/cb?x=1",
                "state": "mine",
                "nonce": "n",
                "code_challenge": s256("v" * 43),
                "code_challenge_method": "S256",
            },
        )
        params = dict(httpx.URL(answer.headers["location"]).params)
        assert params["state"] == "attacker-state"
        assert params["x"] == "1"
        hostile_oidc.tamper_code(params["code"], Tamper(expired=True))
        reply = await http.post(
            f"{hostile_oidc.issuer}/token",
            data={
                "grant_type": "authorization_code",
                "code": params["code"],
                "redirect_uri": "http://127.0.0.1:40101/cb?x=1",
                "code_verifier": "v" * 43,
                "client_id": "filegate-test",
                "client_secret": hostile_oidc.client_secret,
            },
        )
    assert reply.status_code == 200, reply.text
    _, claims = _unverified(reply.json()["id_token"])
    assert claims["exp"] < time.time()
    assert claims["email"] == "alice@example.test"  # the per-code tamper replaced the global one
    assert hostile_oidc.last_token_request().auth_method == "client_secret_post"


def _unverified(id_token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    head, body, _ = id_token.split(".")

    def part(segment: str) -> dict[str, Any]:
        return dict(json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))))

    return part(head), part(body)
