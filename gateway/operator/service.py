"""Creating a tenant: its row, its first admin, its default policy and the start of its audit chain."""

from __future__ import annotations

import uuid

from sqlalchemy.exc import IntegrityError

from gateway.audit import Actor, AuditContext, AuditRecorder, Target
from gateway.db import Database
from gateway.errors import Conflict
from gateway.operator.schemas import TenantCreate, TenantCreated
from gateway.policy.service import PolicyService
from gateway.users.service import checked_password
from tenants.inputs import normalize_email
from tenants.models import Role, Tenant, User
from tenants.passwords import PasswordHashing
from tenants.repository import TenantRecordRepository, UserRepository


class TenantService:
    def __init__(
        self, *, db: Database, hashing: PasswordHashing, policy: PolicyService, audit: AuditRecorder
    ) -> None:
        self.db = db
        self.hashing = hashing
        self.policy = policy
        self.audit = audit

    async def create(self, data: TenantCreate, ctx: AuditContext, *, actor: Actor) -> TenantCreated:
        email = normalize_email(data.admin_email)
        password_hash = await self.hashing.hash(checked_password(data.admin_password, email=email))
        tenant_id = uuid.uuid4()
        try:
            async with self.db.tenant(tenant_id) as session:
                tenant = await TenantRecordRepository(session).add(
                    Tenant(id=tenant_id, name=data.name, slug=data.slug)
                )
                admin = await UserRepository(session, tenant_id).add(
                    User(email=email, role=Role.ADMIN.value, password_hash=password_hash)
                )
                await self.policy.create_default(session, tenant_id)
                await self.audit.start_chain(session, tenant_id)
                await self.audit.record(
                    session,
                    tenant_id,
                    ctx,
                    action="tenant.create",
                    outcome="success",
                    actor=actor,
                    target=Target("tenant", str(tenant_id)),
                )
                await self.audit.record(
                    session,
                    tenant_id,
                    ctx,
                    action="user.create",
                    outcome="success",
                    actor=actor,
                    target=Target("user", str(admin.id)),
                    details={"role": Role.ADMIN.value},
                )
                await session.refresh(tenant)
        except IntegrityError:
            raise Conflict("a tenant with this slug already exists") from None
        return TenantCreated(
            id=tenant.id,
            name=tenant.name,
            slug=tenant.slug,
            admin_user_id=admin.id,
            created_at=tenant.created_at,
        )
