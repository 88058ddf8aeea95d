"""SQLAlchemy 2 models of tenants and identity, and the declarative `Base` every package's tables use."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {
        uuid.UUID: UUID(as_uuid=True),
        datetime: DateTime(timezone=True),
        dict: JSONB,
        dict[str, Any]: JSONB,
    }


class Role(enum.StrEnum):
    ADMIN = "admin"
    MANAGER = "manager"
    USER = "user"
    VIEWER = "viewer"


class TenantScoped:
    """Mixin for every tenant-owned table: a `tenant_id` column that row-level security filters on."""

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), index=True, nullable=False
    )


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(200))
    slug: Mapped[str] = mapped_column(String(63), unique=True)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class User(TenantScoped, Base):
    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("tenant_id", "email", name="uq_users_tenant_email"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    # NULL once erased: personal data is removed, the id lives on as a pseudonym in the audit log.
    email: Mapped[str | None] = mapped_column(String(320))
    password_hash: Mapped[str | None] = mapped_column(Text)
    role: Mapped[str] = mapped_column(String(16))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    totp_secret: Mapped[str | None] = mapped_column(Text)
    totp_enabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    # The last accepted TOTP time step: a code is good once.
    totp_last_step: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    # Raised by everything that revokes all of the user's sessions (disable, role and password change,
    # erasure). Tokens, browser sessions and refresh-token families carry the epoch they were issued
    # under and die when it moves on: the database, not Redis, holds that revocation.
    session_epoch: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())
    erased_at: Mapped[datetime | None] = mapped_column()


class RecoveryCode(TenantScoped, Base):
    __tablename__ = "recovery_codes"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    used_at: Mapped[datetime | None] = mapped_column()


class RefreshToken(TenantScoped, Base):
    __tablename__ = "refresh_tokens"
    __table_args__ = (Index("ix_refresh_tokens_family", "family_id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    family_id: Mapped[uuid.UUID] = mapped_column()
    # The user's session epoch when the family started: a token minted while it moved on is dead.
    session_epoch: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    token_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column()
    used_at: Mapped[datetime | None] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()


class ApiKey(TenantScoped, Base):
    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    created_by: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # The key that created this one (None when a user did): it is revoked with it and never outlives it.
    parent_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("api_keys.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    secret_hash: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[list[str]] = mapped_column(ARRAY(Text))
    expires_at: Mapped[datetime | None] = mapped_column()
    last_used_at: Mapped[datetime | None] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class TenantPolicy(Base):
    """The tenant's upload policy; one row per tenant, keyed by it."""

    __tablename__ = "tenant_policies"
    __table_args__ = (
        CheckConstraint(
            "extension_mismatch_action IN ('reject', 'rename')",
            name="ck_tenant_policies_extension_mismatch_action",
        ),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    max_file_size: Mapped[int] = mapped_column(BigInteger)
    allowed_types: Mapped[list[str]] = mapped_column(ARRAY(Text))
    archive_limits: Mapped[dict[str, Any]] = mapped_column()
    infected_action: Mapped[str] = mapped_column(String(16))
    # What a file clamd could not fully scan becomes: "rejected" or "scan_failed" (never clean).
    unscannable_action: Mapped[str] = mapped_column(String(16), server_default=text("'rejected'"))
    # A name with an extension that runs when opened, on content of another type: "reject" or "rename".
    extension_mismatch_action: Mapped[str] = mapped_column(String(16), server_default=text("'rename'"))
    retention_days: Mapped[int] = mapped_column()
    cors_origins: Mapped[list[str]] = mapped_column(ARRAY(Text))
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())


class IdentityProvider(TenantScoped, Base):
    """A tenant's OpenID Connect provider (Google Workspace, Entra ID, Okta, Keycloak...)."""

    __tablename__ = "identity_providers"
    __table_args__ = (UniqueConstraint("tenant_id", "name", name="uq_identity_providers_tenant_name"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(64))  # the {provider} of the login URL
    issuer: Mapped[str] = mapped_column(String(512))
    client_id: Mapped[str] = mapped_column(String(512))
    client_secret: Mapped[str | None] = mapped_column(Text)  # sealed by the credential manager
    allowed_domains: Mapped[list[str]] = mapped_column(ARRAY(Text))
    default_role: Mapped[str] = mapped_column(String(16))
    create_users: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    redirect_origins: Mapped[list[str]] = mapped_column(ARRAY(Text))  # absolute redirect targets allowed
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())


class UserIdentity(TenantScoped, Base):
    """A user's account at a provider: linked by the provider's `sub`, never by email."""

    __tablename__ = "user_identities"
    __table_args__ = (
        UniqueConstraint("tenant_id", "provider_id", "subject", name="uq_user_identities_provider_subject"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    provider_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("identity_providers.id", ondelete="CASCADE"))
    subject: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class LoginLockout(TenantScoped, Base):
    """Consecutive failed logins of one account and its lock: held here, not in Redis, so that losing
    Redis unlocks nothing. `account` is a hash of tenant slug and normalized email (unknown emails
    get a row like known ones), so the table holds no address."""

    __tablename__ = "login_lockouts"
    __table_args__ = (PrimaryKeyConstraint("tenant_id", "account"),)

    account: Mapped[str] = mapped_column(String(64))
    failures: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    locked_until: Mapped[datetime | None] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())
