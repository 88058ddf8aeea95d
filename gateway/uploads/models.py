"""Upload rows and the outbox that hands them to the worker."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, func, text
from sqlalchemy.orm import Mapped, mapped_column

from tenants.models import Base, TenantScoped


class UploadState(enum.StrEnum):
    RECEIVING = "receiving"
    QUARANTINED = "quarantined"
    SCANNING = "scanning"
    CLEAN = "clean"
    DELIVERING = "delivering"
    DELIVERED = "delivered"
    INFECTED = "infected"
    REJECTED = "rejected"
    SCAN_FAILED = "scan_failed"
    DELIVERY_FAILED = "delivery_failed"


RELEASED = (UploadState.CLEAN, UploadState.DELIVERED)
PENDING_SCAN = (UploadState.QUARANTINED, UploadState.SCANNING)


class Upload(TenantScoped, Base):
    __tablename__ = "uploads"
    __table_args__ = (
        Index("ix_uploads_tenant_state", "tenant_id", "state"),
        Index("ix_uploads_tenant_owner_created", "tenant_id", "owner_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    filename: Mapped[str] = mapped_column(String(255))  # sanitized; safe in paths and headers
    original_filename: Mapped[str] = mapped_column(String(2048))  # escaped, for display only
    size: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    expected_size: Mapped[int | None] = mapped_column(BigInteger)  # tus Upload-Length
    sha256: Mapped[str | None] = mapped_column(String(64))
    declared_type: Mapped[str | None] = mapped_column(String(255))
    detected_type: Mapped[str | None] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(String(64))
    scanner: Mapped[str | None] = mapped_column(String(32))
    signature: Mapped[str | None] = mapped_column(String(255))
    database_version: Mapped[str | None] = mapped_column(String(64))
    scanned_at: Mapped[datetime | None] = mapped_column()
    connection_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("connections.id", ondelete="SET NULL"))
    path: Mapped[str | None] = mapped_column(String(1024))
    storage_key: Mapped[str] = mapped_column(String(512))
    scan_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    expires_at: Mapped[datetime | None] = mapped_column()  # tus: unfinished uploads expire
    delivery_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    delivered_ref: Mapped[str | None] = mapped_column(String(1024))  # the object key / media id it became
    delivered_at: Mapped[datetime | None] = mapped_column()
    purged_at: Mapped[datetime | None] = mapped_column()  # content removed by retention or policy
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())


class OutboxJob(TenantScoped, Base):
    """A job owed to the worker, written in the transaction that makes it owed; done when it finished."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_pending", "tenant_id", "created_at", postgresql_where=text("done_at IS NULL")),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    upload_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("uploads.id", ondelete="CASCADE"), index=True)
    job: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    done_at: Mapped[datetime | None] = mapped_column()
