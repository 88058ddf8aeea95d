"""A small in-process cache of what /v1/me shows that the token does not carry (the email).

In-process is enough: the API never changes an email, and erasure revokes every token of the user, so
an entry can only be served to its own, still-valid user. Entries expire after a minute all the same.
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict

import msgspec

PROFILE_TTL = 60.0
MAX_ENTRIES = 10_000


class Profile(msgspec.Struct, frozen=True):
    email: str | None


class ProfileCache:
    def __init__(self, *, ttl: float = PROFILE_TTL, max_entries: int = MAX_ENTRIES) -> None:
        self._ttl = ttl
        self._max = max_entries
        self._entries: OrderedDict[uuid.UUID, tuple[float, Profile]] = OrderedDict()

    def get(self, user_id: uuid.UUID) -> Profile | None:
        hit = self._entries.get(user_id)
        if hit is None or hit[0] < time.monotonic():
            return None
        return hit[1]

    def put(self, user_id: uuid.UUID, profile: Profile) -> None:
        self._entries[user_id] = (time.monotonic() + self._ttl, profile)
        self._entries.move_to_end(user_id)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def forget(self, user_id: uuid.UUID) -> None:
        self._entries.pop(user_id, None)
