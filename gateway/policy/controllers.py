"""HTTP routes of the upload policy."""

from __future__ import annotations

from litestar import Controller, get, put
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.audit import AuditContext
from gateway.policy.schemas import Policy
from gateway.policy.service import PolicyService
from gateway.security.guards import requires, requires_any
from gateway.security.principal import Principal
from tenants.permissions import Permission


class PolicyController(Controller):
    path = "/v1/policy"
    tags = ["policy"]

    @get("/", guards=[requires(Permission.POLICY_READ)])
    async def get_policy(self, policy: PolicyService, principal: Principal, session: AsyncSession) -> Policy:
        return await policy.get(session, principal.tenant_id)

    @put("/", guards=[requires_any(Permission.POLICY_WRITE)])
    async def put_policy(
        self,
        data: Policy,
        policy: PolicyService,
        principal: Principal,
        session: AsyncSession,
        ctx: AuditContext,
    ) -> Policy:
        return await policy.replace(session, principal, data, ctx)
