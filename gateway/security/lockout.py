"""Account lockout: consecutive failed logins per account lock it for a while.

The count and the lock are held in PostgreSQL (`login_lockouts`, under the tenant's row-level security),
not in Redis: a Redis restart, failover, eviction or deleted key must not hand an attacker a fresh set of
password (or TOTP) guesses against a locked account. Only an unknown tenant's "accounts" are counted in
Redis: no account can exist there, so its lock protects nothing and exists only so that an unknown tenant
answers like a known one.
"""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta

from redis.asyncio import Redis
from sqlalchemy import case, delete, func, or_, select
from sqlalchemy.dialects.postgresql import insert

from gateway.db import Database
from gateway.errors import AccountLocked
from tenants.models import LoginLockout


class Lockout:
    """Consecutive login failures per account; at the threshold the account locks for `seconds`."""

    def __init__(self, db: Database, redis: Redis, prefix: str, *, threshold: int, seconds: int) -> None:
        self._db = db
        self._redis = redis
        self._prefix = prefix
        self.threshold = threshold
        self.seconds = seconds

    async def check(self, tenant_id: uuid.UUID | None, account: str) -> None:
        """Raise 423 `account_locked` (with Retry-After) while the account is locked."""
        if tenant_id is None:
            ttl = int(await self._redis.ttl(self._decoy_keys(account)[1]))
            remaining = float(ttl) if ttl > 0 or ttl == -1 else None
        else:
            async with self._db.tenant(tenant_id) as session:
                until = (
                    await session.execute(
                        select(LoginLockout.locked_until).where(
                            LoginLockout.tenant_id == tenant_id,
                            LoginLockout.account == account,
                            LoginLockout.locked_until > func.now(),
                        )
                    )
                ).scalar_one_or_none()
            remaining = None if until is None else (until - datetime.now(UTC)).total_seconds()
        if remaining is not None:
            raise AccountLocked(
                "too many failed logins; try again later",
                headers={"Retry-After": str(max(math.ceil(remaining), 1))},
            )

    async def failure(self, tenant_id: uuid.UUID | None, account: str) -> bool:
        """Count a failure; True when this one locked the account."""
        if tenant_id is None:
            return await self._decoy_failure(account)
        now, period = func.now(), timedelta(seconds=self.seconds)
        # This failure's place in the run of consecutive failures: a lock that has run out, or a last
        # failure a lock period ago (the old Redis counter's expiry), starts a new run. The run goes on
        # counting while the account is locked, so only the failure that reaches the threshold locks it,
        # however many race.
        streak = case(
            (or_(LoginLockout.locked_until <= now, LoginLockout.updated_at <= now - period), 1),
            else_=LoginLockout.failures + 1,
        )
        first = insert(LoginLockout).values(
            tenant_id=tenant_id,
            account=account,
            failures=1,
            locked_until=now + period if self.threshold == 1 else None,
            updated_at=now,
        )
        upsert = first.on_conflict_do_update(
            index_elements=[LoginLockout.tenant_id, LoginLockout.account],
            set_={
                "failures": streak,
                "locked_until": case(
                    (streak == self.threshold, now + period),
                    (LoginLockout.locked_until > now, LoginLockout.locked_until),
                    else_=None,
                ),
                "updated_at": now,
            },
        ).returning(LoginLockout.failures)
        async with self._db.tenant(tenant_id) as session:
            failures = (await session.execute(upsert)).scalar_one()
        return failures == self.threshold

    async def success(self, tenant_id: uuid.UUID, account: str) -> None:
        # Ends the run of failures, but never lifts a lock that a racing failure has just set.
        async with self._db.tenant(tenant_id) as session:
            await session.execute(
                delete(LoginLockout).where(
                    LoginLockout.tenant_id == tenant_id,
                    LoginLockout.account == account,
                    or_(LoginLockout.locked_until.is_(None), LoginLockout.locked_until <= func.now()),
                )
            )

    # --- an unknown tenant: answered like a known one, counted in Redis --------------------------------
    def _decoy_keys(self, account: str) -> tuple[str, str]:
        return f"{self._prefix}lock:fail:{account}", f"{self._prefix}lock:on:{account}"

    async def _decoy_failure(self, account: str) -> bool:
        fails, locked = self._decoy_keys(account)
        pipe = self._redis.pipeline(transaction=True)
        pipe.incr(fails)
        pipe.expire(fails, self.seconds)
        count = int((await pipe.execute())[0])
        if count >= self.threshold:
            pipe = self._redis.pipeline(transaction=True)
            pipe.set(locked, "1", ex=self.seconds)
            pipe.delete(fails)
            await pipe.execute()
            return True
        return False
