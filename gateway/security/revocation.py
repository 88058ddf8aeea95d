"""Revocation: the database decides, Redis remembers its answers.

What revokes what, each held in PostgreSQL:
- the user's session epoch (`users.session_epoch`), raised by disable, role and password change and
  erasure: every access token (`epoch` claim), browser session and refresh-token family carries the epoch
  it was issued under and is dead once the epoch moved on;
- a refresh-token family (`refresh_tokens.revoked_at`), by logout and by the reuse of a spent token: an
  access token names its family (`sid` claim) and dies with it;
- an API key (`api_keys.revoked_at`, with the keys it created): see the key records in `authn`.

Redis caches each answer under its own key, so a request costs one MGET. Each answer is sealed
(`redis_records`) for its key and trusted for CACHE_TTL at most: an answer written by anyone but the
servers (an older epoch, "live" for a revoked family) is a miss and an alert, and one copied from Redis
before a revocation and written back after it stops being believed within CACHE_TTL. A missing key (never asked,
flushed, evicted, expired) is asked of the database once and written back only while still absent
(SET NX): a refill never overwrites a revocation. A revocation writes its answer before its transaction
commits, so the very next request on any replica sees it (with a short TTL: a rollback heals by itself),
and again after the commit (with the long TTL: an answer read from the database before the commit by a
request racing a flush cannot stay behind).
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.db import Database, after_commit
from gateway.security.redis_records import RecordSeal
from tenants.repository import RefreshTokenRepository, UserRepository

LIVE = "live"
REVOKED = "revoked"
GONE = "gone"  # the user's epoch when the user no longer exists: it equals no token's epoch
# Answers change only by a revocation, which overwrites them; the TTL bounds how long an answer copied out
# of Redis before a revocation could be replayed after it, at one database read per user and family per
# TTL (shared by every replica).
CACHE_TTL = 300
# A revocation's answer before its commit: long enough for any transaction, short enough to heal a rollback.
PENDING_TTL = 60


_LoadKey = tuple[uuid.UUID, uuid.UUID, uuid.UUID | None, bool]


def epoch_text(epoch: int | None) -> str:
    return GONE if epoch is None else str(epoch)


class Revocations:
    def __init__(self, redis: Redis, prefix: str, db: Database, seal: RecordSeal) -> None:
        self._redis = redis
        self._seal = seal
        self._prefix = prefix
        self._db = db
        # Reads in flight only (never a finished answer: that would bypass the next revocation).
        self._loading: dict[_LoadKey, asyncio.Future[tuple[str, str]]] = {}

    # --- cache keys --------------------------------------------------------------------------------
    def epoch_key(self, user_id: uuid.UUID) -> str:
        return f"{self._prefix}auth:epoch:{user_id}"

    def family_key(self, family_id: uuid.UUID) -> str:
        return f"{self._prefix}auth:family:{family_id}"

    def api_key_key(self, key_id: uuid.UUID) -> str:
        """The key's tombstone."""
        return f"{self._prefix}revoked:key:{key_id}"

    def api_key_record_key(self, key_id: uuid.UUID) -> str:
        """The key's cached record (see `authn.KeyRecord`)."""
        return f"{self._prefix}apikey:{key_id}"

    # --- reads -------------------------------------------------------------------------------------
    async def is_live(
        self, tenant_id: uuid.UUID, user_id: uuid.UUID, epoch: int, family_id: uuid.UUID | None = None
    ) -> bool:
        """Is a credential issued under `epoch` (and in `family_id`, for access tokens) still good?"""
        names = [self.epoch_key(user_id)]
        if family_id is not None:
            names.append(self.family_key(family_id))
        values = await self._redis.mget(names)
        current = await self.verified(names[0], values[0])
        family = await self.verified(names[1], values[1]) if family_id is not None else LIVE
        if current is None or family is None:
            loaded_epoch, loaded_family = await self._shared_load(
                tenant_id, user_id, family_id if family is None else None, need_epoch=current is None
            )
            current = current if current is not None else loaded_epoch
            family = family if family is not None else loaded_family
        return current == str(epoch) and family == LIVE

    async def verified(self, name: str, stored: str | None) -> str | None:
        """The answer cached under `name` if the servers sealed it there; anything else is a miss."""
        return await self._seal.read(self._redis, name, stored)

    async def _shared_load(
        self, tenant_id: uuid.UUID, user_id: uuid.UUID, family_id: uuid.UUID | None, *, need_epoch: bool
    ) -> tuple[str, str]:
        key = (tenant_id, user_id, family_id, need_epoch)
        pending = self._loading.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._load(tenant_id, user_id, family_id, need_epoch=need_epoch))
            self._loading[key] = pending

            def done(future: asyncio.Future[tuple[str, str]]) -> None:
                self._loading.pop(key, None)
                if not future.cancelled():
                    future.exception()  # retrieved: every waiter may have gone

            pending.add_done_callback(done)
        # Shielded: one waiter giving up (a client gone) does not cancel the read the others wait for.
        return await asyncio.shield(pending)

    async def _load(
        self, tenant_id: uuid.UUID, user_id: uuid.UUID, family_id: uuid.UUID | None, *, need_epoch: bool
    ) -> tuple[str, str]:
        """The database's answers (user's epoch, family's state) for what Redis lost, written back."""
        current, family, refill = "", LIVE, {}
        async with self._db.tenant(tenant_id) as session:
            if need_epoch:
                current = epoch_text(await UserRepository(session, tenant_id).session_epoch(user_id))
                refill[self.epoch_key(user_id)] = current
            if family_id is not None:
                revoked = await RefreshTokenRepository(session, tenant_id).family_revoked(family_id)
                family = REVOKED if revoked else LIVE
                refill[self.family_key(family_id)] = family
        await self._set(refill, ttl=CACHE_TTL, only_if_absent=True)
        return current, family

    async def remember_epoch(self, user_id: uuid.UUID, epoch: int | None) -> None:
        """Cache an epoch just read from the database (unless a revocation got there first)."""
        await self._set({self.epoch_key(user_id): epoch_text(epoch)}, ttl=CACHE_TTL, only_if_absent=True)

    async def remember_session(self, user_id: uuid.UUID, epoch: int, family_id: uuid.UUID) -> None:
        """Cache what issuing a token pair just read (unless a revocation got there first), so the new
        token's first request asks Redis only. A family that then rolls back is named by no token."""
        values = {self.epoch_key(user_id): epoch_text(epoch), self.family_key(family_id): LIVE}
        await self._set(values, ttl=CACHE_TTL, only_if_absent=True)

    # --- revocations, inside the revoking transaction ----------------------------------------------
    async def revoke_user(self, session: AsyncSession, tenant_id: uuid.UUID, user_id: uuid.UUID) -> None:
        """Every token, browser session, refresh token and cached key record of the user issued so far dies."""
        epoch = await UserRepository(session, tenant_id).raise_session_epoch(user_id)
        await RefreshTokenRepository(session, tenant_id).revoke_user(user_id, datetime.now(UTC))
        await self._publish(session, {self.epoch_key(user_id): epoch_text(epoch)})

    async def revoke_family(self, session: AsyncSession, tenant_id: uuid.UUID, family_id: uuid.UUID) -> None:
        """The session's refresh tokens and every access token issued from them die."""
        await RefreshTokenRepository(session, tenant_id).revoke_family(family_id, datetime.now(UTC))
        await self._publish(session, {self.family_key(family_id): REVOKED})

    async def revoke_api_keys(
        self, session: AsyncSession, keys: list[tuple[uuid.UUID, datetime | None]]
    ) -> None:
        """After `api_keys.revoked_at` is set: a tombstone per key (until it would have expired anyway) and
        its cached record dropped, before the commit and again after it (a record a racing request read
        before the commit cannot stay behind)."""
        if not keys:
            return

        async def bury() -> None:
            now = datetime.now(UTC)
            pipe = self._redis.pipeline(transaction=False)
            for key_id, expires_at in keys:
                ttl = int((expires_at - now).total_seconds()) + 60 if expires_at else 3 * 365 * 86400
                pipe.set(self.api_key_key(key_id), "1", ex=max(ttl, 60))
                pipe.delete(self.api_key_record_key(key_id))
            await pipe.execute()

        await bury()
        after_commit(session, bury)

    async def _publish(self, session: AsyncSession, values: dict[str, str]) -> None:
        await self._set(values, ttl=PENDING_TTL)

        async def committed() -> None:
            await self._set(values, ttl=CACHE_TTL)

        after_commit(session, committed)

    async def _set(self, values: dict[str, str], *, ttl: int, only_if_absent: bool = False) -> None:
        pipe = self._redis.pipeline(transaction=False)
        for name, value in values.items():
            pipe.set(name, self._seal.seal(name, value, ttl=ttl), ex=ttl, nx=only_if_absent)
        await pipe.execute()
