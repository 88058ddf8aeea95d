"""Forged and stale access tokens: each is refused with 401 `invalid_token`."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.keys import keyring_path
from tenants.tokens import KeyRing
from tests.factories import bearer, create_tenant


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def _sign(settings, claims: dict, **header) -> str:
    ring = KeyRing.load(keyring_path(settings))
    headers = {"kid": ring.current.kid, "typ": "at+jwt", **header}
    return jwt.encode(claims, ring.current.private_key, algorithm="EdDSA", headers=headers)


async def _assert_invalid(client, token: str) -> None:
    r = await client.get("/v1/me", headers=bearer(token))
    assert r.status_code == 401, r.text
    assert r.json()["code"] == "invalid_token"
    assert r.headers["content-type"].startswith("application/problem+json")


async def test_valid_token_is_accepted(client) -> None:
    t = await create_tenant(client)
    r = await client.get("/v1/me", headers=t.admin.headers)
    assert r.status_code == 200
    assert r.json()["role"] == "admin"


async def test_alg_none_is_refused(client) -> None:
    t = await create_tenant(client)
    header = _b64(json.dumps({"alg": "none", "typ": "at+jwt", "kid": "x"}).encode())
    payload = _b64(json.dumps(_claims(t.admin.access_token)).encode())
    await _assert_invalid(client, f"{header}.{payload}.")


async def test_hs256_signed_with_the_public_key_is_refused(client, settings) -> None:
    t = await create_tenant(client)
    ring = KeyRing.load(keyring_path(settings))
    public_pem = ring.current.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = _b64(json.dumps({"alg": "HS256", "typ": "at+jwt", "kid": ring.current.kid}).encode())
    payload = _b64(json.dumps(_claims(t.admin.access_token)).encode())
    import hashlib
    import hmac

    sig = hmac.new(public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    await _assert_invalid(client, f"{header}.{payload}.{_b64(sig)}")


async def test_expired_token_is_refused(client, settings) -> None:
    t = await create_tenant(client)
    claims = _claims(t.admin.access_token)
    now = int(time.time())
    claims.update(iat=now - 2000, nbf=now - 2000, exp=now - 1000)
    await _assert_invalid(client, _sign(settings, claims))


@pytest.mark.parametrize("claim", ["aud", "iss"])
async def test_wrong_audience_or_issuer_is_refused(client, settings, claim: str) -> None:
    t = await create_tenant(client)
    claims = _claims(t.admin.access_token)
    claims[claim] = "https://evil.example"
    await _assert_invalid(client, _sign(settings, claims))


async def test_missing_required_claim_is_refused(client, settings) -> None:
    t = await create_tenant(client)
    claims = _claims(t.admin.access_token)
    del claims["jti"]
    await _assert_invalid(client, _sign(settings, claims))


async def test_unknown_kid_is_refused(client, settings) -> None:
    t = await create_tenant(client)
    await _assert_invalid(client, _sign(settings, _claims(t.admin.access_token), kid="not-a-key-we-hold"))


async def test_token_signed_by_a_foreign_key_with_our_kid_is_refused(client, settings) -> None:
    t = await create_tenant(client)
    ring = KeyRing.load(keyring_path(settings))
    forged = jwt.encode(
        _claims(t.admin.access_token),
        Ed25519PrivateKey.generate(),
        algorithm="EdDSA",
        headers={"kid": ring.current.kid, "typ": "at+jwt"},
    )
    await _assert_invalid(client, forged)


async def test_tampered_payload_is_refused(client) -> None:
    t = await create_tenant(client)
    header, _, signature = t.admin.access_token.split(".")
    claims = _claims(t.admin.access_token)
    claims["role"] = "admin"
    claims["tid"] = "00000000-0000-4000-8000-000000000000"
    await _assert_invalid(client, f"{header}.{_b64(json.dumps(claims).encode())}.{signature}")


async def test_token_of_another_type_is_refused(client, settings) -> None:
    t = await create_tenant(client)
    await _assert_invalid(client, _sign(settings, _claims(t.admin.access_token), typ="JWT"))


@pytest.mark.parametrize("value", ["", "Bearer", "Bearer ", "Basic abc", "Bearer not.a.jwt", "Bearer fg_zz"])
async def test_garbage_authorization_headers(client, value: str) -> None:
    r = await client.get("/v1/me", headers={"Authorization": value})
    assert r.status_code == 401
    assert r.json()["code"] in ("invalid_token", "unauthenticated")


async def test_no_credentials_is_unauthenticated(client) -> None:
    r = await client.get("/v1/me")
    assert r.status_code == 401
    assert r.json()["code"] == "unauthenticated"


async def test_jwks_publishes_the_signing_key(client, settings) -> None:
    t = await create_tenant(client)
    r = await client.get("/.well-known/jwks.json")
    assert r.status_code == 200
    keys = r.json()["keys"]
    kid = jwt.get_unverified_header(t.admin.access_token)["kid"]
    jwk = next(k for k in keys if k["kid"] == kid)
    assert jwk["kty"] == "OKP" and jwk["crv"] == "Ed25519" and jwk["alg"] == "EdDSA" and "d" not in jwk
    public = jwt.PyJWK(jwk).key
    claims = jwt.decode(t.admin.access_token, public, algorithms=["EdDSA"], audience=settings.auth.audience)
    assert claims["tid"] == t.id and claims["exp"] - int(claims["iat"]) <= 900
