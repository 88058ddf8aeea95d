"""Records Redis holds for a security decision carry an HMAC that only the servers can make.

Redis is a cache and a queue, not an authority: whoever can write to it (a shared production Redis,
another service on it, a compromised neighbour) must not be able to sign anyone in, mint an API key or
bring a revoked token back. So every value a security decision trusts (browser sessions, cached API-key
records, revocation answers, OIDC sign-in state) is stored sealed:

    <mac>.<key version>.<not after>.<payload>

`mac` is HMAC-SHA256 (base64url) over the Redis key name the value is stored under (length-prefixed)
and everything after the first dot, so a record cannot be forged, altered, moved to another key (another
session's cookie, another user's epoch) or kept beyond `not after`, which bounds how long a record an
attacker copied earlier can be replayed. The key is derived with HKDF from the credential key ring
(FILEGATE_KEYRING), one per ring version: `filegate keys rotate` seals new records with the new version
while records of older versions still verify as long as their version is in the ring.

A value that does not verify is a cache miss for the caller (reload from the database; a session, which
lives only here, is gone) and a `security.alert` (kind `redis_record_forged`) naming the key, never the
value. `read` then removes it, only if it is still the same value, so the alert fires once and a
concurrent legitimate write is never lost.
"""

from __future__ import annotations

import base64
import enum
import hmac
import struct
import time
from collections.abc import Mapping

import structlog
from redis.asyncio import Redis

log = structlog.get_logger("filegate.security")

# What the HKDF output is for: a key derived here is never the key of anything else.
PURPOSE = b"filegate redis record mac v1"
MAC_BYTES = 32
_MAC_TEXT = 43  # base64url of 32 bytes, unpadded
# Replicas' clocks and Redis's expiry may disagree by this much before a late record looks replayed.
CLOCK_SKEW = 30

# Delete the key only if it still holds what we judged forged: a legitimate write since stays.
_DROP_IF_UNCHANGED = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
)


class Refusal(enum.Enum):
    """Why a stored value is not trusted."""

    FORGED = "forged"  # not sealed by us for this key, altered, or replayed long past its time: an alert
    EXPIRED = "expired"  # just past its time (clocks and Redis's expiry disagree a little): quiet
    UNVERIFIABLE = "unverifiable"  # sealed with a key version this replica's ring does not hold: quiet


class RecordSeal:
    """Seals and opens the values Redis holds for security decisions."""

    def __init__(self, keys: Mapping[int, bytes]) -> None:
        if not keys or any(len(k) != MAC_BYTES for k in keys.values()):
            raise ValueError("record keys must be 256 bits, at least one")
        self._keys = dict(keys)
        self._version = max(self._keys)

    def seal(self, name: str, payload: str, *, ttl: float) -> str:
        """`payload` sealed for the Redis key `name`, trusted for `ttl` seconds from now."""
        body = f"{self._version}.{int(time.time() + ttl) + 1}.{payload}"
        return f"{self._mac(self._keys[self._version], name, body)}.{body}"

    def open(self, name: str, stored: str) -> str | Refusal:
        """The payload, or why `stored` is not a record to trust under `name`."""
        mac, dot, body = stored.partition(".")
        version_text, _, rest = body.partition(".")
        not_after_text, dot2, payload = rest.partition(".")
        if not (
            dot and dot2 and len(mac) == _MAC_TEXT and version_text.isdigit() and not_after_text.isdigit()
        ):
            return self._forged(name, "malformed")
        key = self._keys.get(int(version_text))
        if key is None:
            # A ring rotated on one replica before another, or an old version retired: not verifiable here,
            # so not trusted, but maybe good on a replica that holds the version.
            log.info("redis_record.key_version_unknown", key=name, version=int(version_text))
            return Refusal.UNVERIFIABLE
        if not hmac.compare_digest(mac, self._mac(key, name, body)):
            return self._forged(name, "bad_mac")
        late = time.time() - int(not_after_text)
        if late > 0:
            return self._forged(name, "replayed") if late > CLOCK_SKEW else Refusal.EXPIRED
        return payload

    async def read(self, redis: Redis, name: str, stored: str | None) -> str | None:
        """The payload of the value read from `name`, or None (a miss). A forged or expired value is
        removed (unless replaced meanwhile), so the alert fires once and the database's answer can be
        cached again; one of a key version this replica does not hold is left for those that do."""
        if stored is None:
            return None
        opened = self.open(name, stored)
        if not isinstance(opened, Refusal):
            return opened
        if opened is not Refusal.UNVERIFIABLE:
            await redis.eval(_DROP_IF_UNCHANGED, 1, name, stored)  # type: ignore[misc]
        return None

    @staticmethod
    def _mac(key: bytes, name: str, body: str) -> str:
        encoded = name.encode()
        message = struct.pack(">I", len(encoded)) + encoded + body.encode()
        return base64.urlsafe_b64encode(hmac.digest(key, message, "sha256")).rstrip(b"=").decode()

    @staticmethod
    def _forged(name: str, reason: str) -> Refusal:
        log.warning("security.alert", kind="redis_record_forged", key=name, reason=reason)
        return Refusal.FORGED
