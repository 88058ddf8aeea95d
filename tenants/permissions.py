"""The one permission matrix. Every guard reads it; no controller compares roles.

Each permission maps a role to the reach it grants: ANY resource of the tenant, or only the principal's
OWN resources (the ownership rule is applied by the service that knows the owner). A role missing from a
permission's row does not hold it.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from types import MappingProxyType

from tenants.models import Role


class Reach(enum.Enum):
    OWN = "own"
    ANY = "any"


class Permission(enum.StrEnum):
    USERS_READ = "users.read"
    USERS_WRITE = "users.write"
    API_KEYS_MANAGE = "api_keys.manage"
    POLICY_READ = "policy.read"
    POLICY_WRITE = "policy.write"
    AUDIT_READ = "audit.read"
    CONNECTIONS_READ = "connections.read"
    CONNECTIONS_WRITE = "connections.write"
    OBJECTS_READ = "objects.read"
    OBJECTS_DELETE = "objects.delete"
    UPLOADS_CREATE = "uploads.create"
    UPLOADS_READ = "uploads.read"
    UPLOADS_DELETE = "uploads.delete"
    UPLOADS_RETRY = "uploads.retry"
    INSTAGRAM_PUBLISH = "instagram.publish"
    MFA_MANAGE = "mfa.manage"


A, M, U, V = Role.ADMIN, Role.MANAGER, Role.USER, Role.VIEWER
ANY, OWN = Reach.ANY, Reach.OWN

MATRIX: MappingProxyType[Permission, MappingProxyType[Role, Reach]] = MappingProxyType(
    {
        perm: MappingProxyType(row)
        for perm, row in {
            # Anyone reads themselves; Admin and Manager read the whole tenant.
            Permission.USERS_READ: {A: ANY, M: ANY, U: OWN, V: OWN},
            Permission.USERS_WRITE: {A: ANY},
            # A Manager manages the keys they created; an Admin manages every key.
            Permission.API_KEYS_MANAGE: {A: ANY, M: OWN},
            Permission.POLICY_READ: {A: ANY, M: ANY, U: ANY, V: ANY},
            Permission.POLICY_WRITE: {A: ANY},
            Permission.AUDIT_READ: {A: ANY},
            Permission.CONNECTIONS_READ: {A: ANY, M: ANY, U: ANY},
            Permission.CONNECTIONS_WRITE: {A: ANY},
            Permission.OBJECTS_READ: {A: ANY, M: ANY, U: ANY, V: ANY},
            Permission.OBJECTS_DELETE: {A: ANY, M: ANY},
            Permission.UPLOADS_CREATE: {A: ANY, M: ANY, U: ANY},
            Permission.UPLOADS_READ: {A: ANY, M: ANY, U: OWN, V: ANY},
            Permission.UPLOADS_DELETE: {A: ANY, M: ANY, U: OWN},
            Permission.UPLOADS_RETRY: {A: ANY, M: ANY, U: OWN},
            Permission.INSTAGRAM_PUBLISH: {A: ANY, M: ANY, U: OWN},
            Permission.MFA_MANAGE: {A: OWN, M: OWN, U: OWN, V: OWN},
        }.items()
    }
)


def grants(role: Role) -> dict[Permission, Reach]:
    """Every permission a role holds, with its reach."""
    return {perm: row[role] for perm, row in MATRIX.items() if role in row}


def restrict(role: Role, scopes: Iterable[str] | None) -> dict[Permission, Reach]:
    """The role's grants narrowed to `scopes` (an API key); None means the role's full grants."""
    held = grants(role)
    if scopes is None:
        return held
    wanted = set(scopes)
    return {perm: reach for perm, reach in held.items() if perm.value in wanted}


def parse_scopes(scopes: Iterable[str]) -> list[Permission]:
    """Scope names to permissions; raises ValueError naming the first unknown scope."""
    out: list[Permission] = []
    for name in scopes:
        try:
            out.append(Permission(name))
        except ValueError:
            raise ValueError(f"unknown scope: {name[:64]}") from None
    return out
