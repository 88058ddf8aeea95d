"""ID token validation (OpenID Connect Core 3.1.3.7) with joserfc: signature by the provider's JWKS, a
pinned set of asymmetric algorithms, `iss`, `aud`, `exp`, `iat`, `nonce` and `azp`."""

from __future__ import annotations

from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"]
LEEWAY = 60


class InvalidIdToken(Exception):
    """The ID token is not acceptable; the message names which check failed (safe to log)."""


def validate(id_token: str, keys: KeySet, *, issuer: str, client_id: str, nonce: str) -> dict[str, Any]:
    try:
        token = jwt.decode(id_token, keys, algorithms=ALGORITHMS)
    except JoseError as exc:
        raise InvalidIdToken(f"signature: {type(exc).__name__}") from None
    except (ValueError, TypeError):
        raise InvalidIdToken("malformed") from None
    claims = dict(token.claims)
    registry = jwt.JWTClaimsRegistry(
        leeway=LEEWAY,
        iss={"essential": True, "value": issuer},
        aud={"essential": True, "value": client_id},
        sub={"essential": True},
        exp={"essential": True},
        iat={"essential": True},
        nonce={"essential": True, "value": nonce},
    )
    try:
        registry.validate(claims)
    except JoseError as exc:
        claim = getattr(exc, "claim", None) or type(exc).__name__
        raise InvalidIdToken(f"claim {claim}") from None
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    azp = claims.get("azp")
    # Several audiences: the token must say it was issued to us; and when azp is there it must be us.
    if (len(audiences) > 1 and azp is None) or (azp is not None and azp != client_id):
        raise InvalidIdToken("claim azp")
    return claims
