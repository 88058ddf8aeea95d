"""Connection records: a tenant's storage destinations. Secrets are stored sealed, one ciphertext per field."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String, UniqueConstraint, delete, func
from sqlalchemy.orm import Mapped, mapped_column

from tenants.models import Base, TenantScoped
from tenants.repository import TenantRepository


class Connection(TenantScoped, Base):
    __tablename__ = "connections"
    __table_args__ = (UniqueConstraint("tenant_id", "name", name="uq_connections_tenant_name"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20))
    config: Mapped[dict[str, Any]] = mapped_column()
    # field name -> sealed secret (connectors.credentials, bound to tenant|connection|field)
    secrets: Mapped[dict[str, Any]] = mapped_column()
    created_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    secrets_updated_at: Mapped[datetime] = mapped_column(server_default=func.now())
    token_expires_at: Mapped[datetime | None] = mapped_column()  # long-lived tokens (Instagram)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())


class ConnectionRepository(TenantRepository[Connection]):
    model = Connection

    async def remove(self, connection_id: uuid.UUID) -> str | None:
        """Compare-and-set delete: the kind of the connection it removed, None when another request removed it
        first (so only one delete is recorded). Its row (and, by the foreign key, its uploads' rows) are
        locked before any audit event is appended."""
        result = await self.session.execute(
            delete(Connection)
            .where(Connection.tenant_id == self.tenant_id, Connection.id == connection_id)
            .returning(Connection.kind)
        )
        return result.scalar_one_or_none()

    async def of_kind(self, kind: str) -> list[Connection]:
        result = await self.session.execute(self.select().where(Connection.kind == kind))
        return list(result.scalars())
