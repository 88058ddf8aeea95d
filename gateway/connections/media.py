"""Signed media links: a short-lived URL that serves one clean upload, for the Instagram Graph API to fetch.

The link is an EdDSA JWT from the gateway's signing ring with its own type (`media+jwt`) and audience
(`filegate-media`), so it can never be used as an access token and an access token is never a media
link. It names one tenant and one upload, expires after FILEGATE_MEDIA_URL_TTL seconds, and the route that
honours it serves only content that is still `clean`, `delivering` or `delivered`.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import jwt

from tenants.tokens import ALGORITHM, KeyRing

MEDIA_TYPE = "media+jwt"
MEDIA_AUDIENCE = "filegate-media"


class InvalidMediaLink(Exception):
    pass


@dataclass(frozen=True, slots=True)
class MediaGrant:
    tenant_id: uuid.UUID
    upload_id: uuid.UUID


class MediaLinks:
    def __init__(self, ring: KeyRing, *, issuer: str, public_url: str | None, ttl: int) -> None:
        self._ring = ring
        self._issuer = issuer
        self._public_url = public_url.rstrip("/") if public_url else None
        self.ttl = ttl

    def url(self, tenant_id: uuid.UUID, upload_id: uuid.UUID) -> str:
        if self._public_url is None:
            raise InvalidMediaLink(
                "FILEGATE_PUBLIC_URL is needed to publish media (the Graph API fetches it)"
            )
        return f"{self._public_url}/v1/media/{self.token(tenant_id, upload_id)}"

    def token(self, tenant_id: uuid.UUID, upload_id: uuid.UUID) -> str:
        key = self._ring.current
        now = int(time.time())
        payload = {
            "iss": self._issuer,
            "aud": MEDIA_AUDIENCE,
            "tid": str(tenant_id),
            "sub": str(upload_id),
            "iat": now,
            "nbf": now,
            "exp": now + self.ttl,
        }
        return jwt.encode(
            payload, key.private_key, algorithm=ALGORITHM, headers={"kid": key.kid, "typ": MEDIA_TYPE}
        )

    def verify(self, token: str) -> MediaGrant:
        try:
            header = jwt.get_unverified_header(token)
            if header.get("alg") != ALGORITHM or header.get("typ") != MEDIA_TYPE:
                raise InvalidMediaLink("not a media link")
            kid = header.get("kid")
            key = self._ring.get(kid) if isinstance(kid, str) else None
            if key is None:
                raise InvalidMediaLink("unknown key")
            payload = jwt.decode(
                token,
                key.public_key,
                algorithms=[ALGORITHM],
                audience=MEDIA_AUDIENCE,
                issuer=self._issuer,
                options={"require": ["exp", "iat", "nbf", "aud", "iss", "sub", "tid"]},
            )
            return MediaGrant(uuid.UUID(payload["tid"]), uuid.UUID(payload["sub"]))
        except (jwt.InvalidTokenError, ValueError, TypeError, KeyError):
            raise InvalidMediaLink("invalid media link") from None
