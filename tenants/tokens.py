"""Access tokens: short-lived EdDSA (Ed25519) JWTs from a rotating key ring, verified with pyjwt.

The algorithm is pinned: tokens are verified only with `EdDSA` and only with a key the ring holds for the
token's `kid`, so `alg: none`, HS256-with-the-public-key and unknown `kid` all fail before any claim is read.
"""

from __future__ import annotations

import functools
import json
import os
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from jwt.algorithms import OKPAlgorithm

ALGORITHM = "EdDSA"
TOKEN_TYPE = "at+jwt"  # RFC 9068: an access token is not an ID token
# `sid`: the refresh-token family (the session) the token was issued in; `epoch`: the user's session epoch
# then. Revoking either (in the database) revokes the token, so both are required.
REQUIRED_CLAIMS = ["iss", "aud", "sub", "exp", "nbf", "iat", "jti", "tid", "role", "sid", "epoch"]


class InvalidAccessToken(Exception):
    """The token is not one we issued, or no longer valid. The reason is for logs, never for clients."""


class KeyRingError(Exception):
    """The key ring file is missing or malformed."""


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    private_key: Ed25519PrivateKey
    created_at: datetime

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()


class KeyRing:
    """Ed25519 keys, newest first; the newest signs, all verify until pruned."""

    def __init__(self, keys: list[SigningKey]) -> None:
        if not keys:
            raise KeyRingError("key ring is empty")
        self._keys = sorted(keys, key=lambda k: k.created_at, reverse=True)
        self._by_kid = {k.kid: k for k in self._keys}

    @property
    def current(self) -> SigningKey:
        return self._keys[0]

    def get(self, kid: str) -> SigningKey | None:
        return self._by_kid.get(kid)

    @property
    def keys(self) -> list[SigningKey]:
        return list(self._keys)

    def jwks(self) -> dict[str, Any]:
        out = []
        for k in self._keys:
            jwk = OKPAlgorithm.to_jwk(k.public_key, as_dict=True)
            jwk.update({"kid": k.kid, "use": "sig", "alg": ALGORITHM})
            out.append(jwk)
        return {"keys": out}

    # --- persistence -------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: Path) -> KeyRing:
        try:
            data = json.loads(path.read_text())
            keys = [
                SigningKey(
                    kid=item["kid"],
                    private_key=_load_private(item["private_key_pem"].encode()),
                    created_at=datetime.fromisoformat(item["created_at"]),
                )
                for item in data["keys"]
            ]
        except FileNotFoundError:
            raise KeyRingError(f"key ring file not found: {path}") from None
        except (KeyError, TypeError, ValueError):
            raise KeyRingError(f"key ring file is malformed: {path}") from None
        return cls(keys)

    def to_json(self) -> str:
        data = {
            "keys": [
                {
                    "kid": k.kid,
                    "created_at": k.created_at.isoformat(),
                    "private_key_pem": k.private_key.private_bytes(
                        serialization.Encoding.PEM,
                        serialization.PrivateFormat.PKCS8,
                        serialization.NoEncryption(),
                    ).decode(),
                }
                for k in self._keys
            ]
        }
        return json.dumps(data, indent=2)

    def save(self, path: Path) -> None:
        """Write atomically with mode 0600: a half-written ring must never be read."""
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # a key ring's directory is private too
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(self.to_json())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    @staticmethod
    def new_key() -> SigningKey:
        return SigningKey(
            kid=secrets.token_urlsafe(12),
            private_key=Ed25519PrivateKey.generate(),
            created_at=datetime.now(UTC),
        )

    @classmethod
    def generate(cls) -> KeyRing:
        return cls([cls.new_key()])

    def rotated(self, *, retire_after_seconds: int) -> KeyRing:
        """A ring with a new signing key; keys superseded more than `retire_after_seconds` ago are dropped.

        A superseded key keeps verifying until every token it signed has expired.
        """
        now = datetime.now(UTC)
        keep: list[SigningKey] = []
        successor_created = now
        for k in self._keys:  # newest first: each key was superseded when its successor was created
            if (now - successor_created).total_seconds() <= retire_after_seconds:
                keep.append(k)
            successor_created = k.created_at
        return KeyRing([self.new_key(), *keep])


def _load_private(pem: bytes) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("not an Ed25519 key")
    return key


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: uuid.UUID
    tenant_id: uuid.UUID
    role: str
    jti: str
    issued_at: float
    expires_at: int
    session_id: uuid.UUID
    epoch: int


LEEWAY = 5
VERIFIED_CACHE_SIZE = 8192


class AccessTokens:
    def __init__(self, ring: KeyRing, *, issuer: str, audience: str, ttl: int) -> None:
        self._ring = ring
        self._issuer = issuer
        self._audience = audience
        self.ttl = ttl
        # A token's signature and claims never change: verify each token once, then only its clock.
        # Failures raise and are never cached; revocation is checked by the caller on every request.
        self._verified = functools.lru_cache(maxsize=VERIFIED_CACHE_SIZE)(self._verify_once)

    @property
    def ring(self) -> KeyRing:
        return self._ring

    def issue(
        self, *, user_id: uuid.UUID, tenant_id: uuid.UUID, role: str, session_id: uuid.UUID, epoch: int
    ) -> tuple[str, AccessClaims]:
        key = self._ring.current
        # A fractional iat lets "revoke every session issued before now" separate tokens within one second.
        now = round(time.time(), 3)
        claims = AccessClaims(
            user_id=user_id,
            tenant_id=tenant_id,
            role=role,
            jti=secrets.token_urlsafe(16),
            issued_at=now,
            expires_at=int(now) + self.ttl,
            session_id=session_id,
            epoch=epoch,
        )
        payload = {
            "iss": self._issuer,
            "aud": self._audience,
            "sub": str(user_id),
            "tid": str(tenant_id),
            "role": role,
            "iat": claims.issued_at,
            "nbf": int(now),
            "exp": claims.expires_at,
            "jti": claims.jti,
            "sid": str(session_id),
            "epoch": epoch,
        }
        token = jwt.encode(
            payload, key.private_key, algorithm=ALGORITHM, headers={"kid": key.kid, "typ": TOKEN_TYPE}
        )
        return token, claims

    def verify(self, token: str) -> AccessClaims:
        claims = self._verified(token)
        if claims.expires_at + LEEWAY < time.time():
            raise InvalidAccessToken("expired")
        return claims

    def _verify_once(self, token: str) -> AccessClaims:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise InvalidAccessToken("malformed header") from exc
        if header.get("alg") != ALGORITHM:
            raise InvalidAccessToken("algorithm not allowed")
        if header.get("typ") != TOKEN_TYPE:
            raise InvalidAccessToken("wrong token type")
        kid = header.get("kid")
        key = self._ring.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise InvalidAccessToken("unknown kid")
        try:
            payload = jwt.decode(
                token,
                key.public_key,
                algorithms=[ALGORITHM],
                audience=self._audience,
                issuer=self._issuer,
                options={"require": REQUIRED_CLAIMS, "verify_signature": True},
                leeway=LEEWAY,
            )
            return AccessClaims(
                user_id=uuid.UUID(payload["sub"]),
                tenant_id=uuid.UUID(payload["tid"]),
                role=str(payload["role"]),
                jti=str(payload["jti"]),
                issued_at=float(payload["iat"]),
                expires_at=int(payload["exp"]),
                session_id=uuid.UUID(payload["sid"]),
                epoch=_integer(payload["epoch"]),
            )
        except (jwt.InvalidTokenError, ValueError, TypeError) as exc:
            raise InvalidAccessToken(type(exc).__name__) from exc


def _integer(value: object) -> int:
    # bool is an int in Python and 1.5 would truncate: only a JSON integer is an epoch.
    if type(value) is not int:
        raise ValueError("epoch must be an integer")
    return value
