"""ID token validation (pure): signature by the provider's keys, pinned algorithms, and every claim check."""

from __future__ import annotations

import time
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from gateway.oidc.service import InvalidRedirect, safe_redirect
from tenants.oidc import InvalidIdToken, validate

ISSUER = "https://idp.example"
CLIENT = "filegate"
NONCE = "n-0123456789"

KEY = RSAKey.generate_key(2048, parameters={"kid": "k1"})
OTHER_KEY = RSAKey.generate_key(2048, parameters={"kid": "k1"})  # same kid, not published
PUBLISHED = KeySet.import_key_set({"keys": [KEY.as_dict(private=False)]})


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {"iss": ISSUER, "aud": CLIENT, "sub": "alice", "iat": now, "exp": now + 300, "nonce": NONCE}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def sign(payload: dict[str, Any], key: RSAKey = KEY, alg: str = "RS256") -> str:
    return jwt.encode({"alg": alg, "kid": "k1"}, payload, key)


def check(token: str) -> dict[str, Any]:
    return validate(token, PUBLISHED, issuer=ISSUER, client_id=CLIENT, nonce=NONCE)


def test_a_correct_token_validates() -> None:
    assert check(sign(claims()))["sub"] == "alice"
    assert check(sign(claims(aud=[CLIENT, "other"], azp=CLIENT)))["sub"] == "alice"


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"iss": "https://evil.example"}, "iss"),
        ({"aud": "another-client"}, "aud"),
        ({"aud": ["another-client", "third"]}, "aud"),
        ({"nonce": "replayed-nonce"}, "nonce"),
        ({"nonce": None}, "nonce"),
        ({"exp": -3600}, "exp"),  # relative to now
        ({"sub": None}, "sub"),
        ({"iat": None}, "iat"),
        ({"aud": [CLIENT, "other"]}, "azp"),  # several audiences and no azp
        ({"azp": "another-client"}, "azp"),
    ],
)
def test_claims_are_checked(overrides: dict[str, Any], reason: str) -> None:
    # The claims are made when the test runs, not when it is collected: a slow run must not expire them.
    if "exp" in overrides:
        overrides = {**overrides, "exp": int(time.time()) + overrides["exp"]}
    with pytest.raises(InvalidIdToken, match=reason):
        check(sign(claims(**overrides)))


def test_a_key_the_provider_does_not_publish_is_refused() -> None:
    with pytest.raises(InvalidIdToken, match="signature"):
        check(sign(claims(), OTHER_KEY))


def test_alg_none_and_symmetric_algorithms_are_refused() -> None:
    import base64
    import json

    def b64(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    unsigned = f"{b64({'alg': 'none'})}.{b64(claims())}."
    with pytest.raises(InvalidIdToken):
        check(unsigned)
    # HS256 keyed with the public key's bytes (the classic confusion attack), built by hand because
    # the JOSE libraries refuse to make it.
    import hashlib
    import hmac

    signing_input = f"{b64({'alg': 'HS256', 'kid': 'k1'})}.{b64(claims())}"
    mac = hmac.new(KEY.as_pem(private=False), signing_input.encode(), hashlib.sha256).digest()
    hs = signing_input + "." + base64.urlsafe_b64encode(mac).decode().rstrip("=")
    with pytest.raises(InvalidIdToken):
        check(hs)


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example/x",
        "https://evil.example/app",
        "http://evil.example",
        "/\\evil.example",
        "javascript:alert(1)",
        "https://user@allowed.example/",
        "/app\r\nSet-Cookie: x=y",
        "\\\\evil.example",
    ],
)
def test_redirects_off_site_are_refused(target: str) -> None:
    with pytest.raises(InvalidRedirect):
        safe_redirect(target, ["https://allowed.example"])


def test_allowed_redirects() -> None:
    assert safe_redirect(None, []) == "/app/upload"
    assert safe_redirect("/app/upload?x=1", []) == "/app/upload?x=1"
    assert (
        safe_redirect("https://allowed.example/done", ["https://allowed.example"])
        == "https://allowed.example/done"
    )
