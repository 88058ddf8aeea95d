"""Who is calling: the tenant, the user, the role and the permissions this credential carries."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Literal

from gateway.audit import Actor
from tenants.models import Role
from tenants.permissions import Permission, Reach


@dataclass(frozen=True, slots=True)
class Principal:
    tenant_id: uuid.UUID
    user_id: uuid.UUID
    role: Role
    grants: dict[Permission, Reach]
    via: Literal["jwt", "api_key", "session"]
    # The refresh-token family an access token was issued in: what its logout revokes.
    session_id: uuid.UUID | None = None
    api_key_id: uuid.UUID | None = None

    @property
    def actor(self) -> Actor:
        if self.api_key_id is not None:
            return Actor("api_key", str(self.api_key_id))
        return Actor("user", str(self.user_id))

    def reach(self, permission: Permission) -> Reach | None:
        return self.grants.get(permission)

    def may(self, permission: Permission, *, owner_id: uuid.UUID | None = None) -> bool:
        """The ownership rule: ANY reaches every resource, OWN only the principal's own."""
        reach = self.grants.get(permission)
        if reach is Reach.ANY:
            return True
        return reach is Reach.OWN and owner_id is not None and owner_id == self.user_id

    @property
    def permission_names(self) -> list[str]:
        return sorted(p.value for p in self.grants)
