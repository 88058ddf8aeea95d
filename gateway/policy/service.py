"""Reading and replacing a tenant's upload policy; a change is audited with the fields that changed."""

from __future__ import annotations

import uuid

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.audit import AuditContext, AuditRecorder, Target
from gateway.errors import ValidationFailed
from gateway.policy.schemas import ArchiveLimits, Policy, origin_problem
from gateway.security.principal import Principal
from tenants.models import TenantPolicy
from tenants.repository import PolicyRepository


def to_model(policy: Policy, row: TenantPolicy | None = None) -> TenantPolicy:
    row = row or TenantPolicy()
    row.max_file_size = policy.max_file_size
    row.allowed_types = list(policy.allowed_types)
    row.archive_limits = msgspec.to_builtins(policy.archive_limits)
    row.infected_action = policy.infected_action
    row.unscannable_action = policy.unscannable_action
    row.extension_mismatch_action = policy.extension_mismatch_action
    row.retention_days = policy.retention_days
    row.cors_origins = list(policy.cors_origins)
    return row


def from_model(row: TenantPolicy) -> Policy:
    return Policy(
        max_file_size=row.max_file_size,
        allowed_types=list(row.allowed_types),
        archive_limits=msgspec.convert(row.archive_limits, ArchiveLimits),
        infected_action=row.infected_action,  # type: ignore[arg-type]
        unscannable_action=row.unscannable_action,  # type: ignore[arg-type]
        extension_mismatch_action=row.extension_mismatch_action,  # type: ignore[arg-type]
        retention_days=row.retention_days,
        cors_origins=list(row.cors_origins),
    )


class PolicyService:
    def __init__(self, *, audit: AuditRecorder) -> None:
        self.audit = audit

    async def create_default(self, session: AsyncSession, tenant_id: uuid.UUID) -> None:
        await PolicyRepository(session, tenant_id).add(to_model(Policy()))

    async def get(self, session: AsyncSession, tenant_id: uuid.UUID) -> Policy:
        row = await PolicyRepository(session, tenant_id).get()
        return from_model(row) if row else Policy()

    async def replace(
        self, session: AsyncSession, principal: Principal, policy: Policy, ctx: AuditContext
    ) -> Policy:
        for origin in policy.cors_origins:
            problem = origin_problem(origin)
            if problem is not None:
                raise ValidationFailed(f"cors_origins: {origin[:100]} {problem}")
        repo = PolicyRepository(session, principal.tenant_id)
        row = await repo.get(for_update=True)
        before = msgspec.to_builtins(from_model(row)) if row else {}
        after = msgspec.to_builtins(policy)
        changed = sorted(k for k in after if before.get(k) != after[k])
        if row is None:
            await repo.add(to_model(policy))
        else:
            to_model(policy, row)
        if changed:
            await self.audit.record(
                session,
                principal.tenant_id,
                ctx,
                action="policy.update",
                outcome="success",
                actor=principal.actor,
                target=Target("policy", str(principal.tenant_id)),
                details={"changed": changed, "after": {k: after[k] for k in changed}},
            )
        return policy
