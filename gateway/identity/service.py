"""Identity: login (password + TOTP), refresh rotation with reuse detection, logout, TOTP enrollment.

Login and refresh learn their tenant from the request, so they own their transactions. A failure is
audited in a transaction of its own (or in the one that revokes a reused family) and raised after commit.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from connectors.credentials import Binding, CredentialError, CredentialManager
from gateway.audit import Actor, AuditContext, AuditRecorder, Target
from gateway.db import Database
from gateway.errors import (
    Conflict,
    FilegateError,
    InvalidCredentials,
    InvalidToken,
    InvalidTotp,
    MfaRequired,
    NotFound,
    TokenReused,
    ValidationFailed,
)
from gateway.identity.profile import Profile, ProfileCache
from gateway.identity.schemas import Me, TokenPair, TotpConfirmed, TotpEnrollment
from gateway.security.lockout import Lockout
from gateway.security.principal import Principal
from gateway.security.ratelimit import RateLimiter, subject
from gateway.security.revocation import Revocations
from gateway.settings import Settings
from tenants import credentials, totp
from tenants.inputs import SLUG_PATTERN, InvalidInput, account_key, normalize_email
from tenants.models import RefreshToken, User
from tenants.passwords import PasswordHashing
from tenants.repository import RecoveryCodeRepository, RefreshTokenRepository, UserRepository
from tenants.tokens import AccessTokens

log = structlog.get_logger("filegate.identity")


def totp_binding(tenant_id: uuid.UUID, user_id: uuid.UUID) -> Binding:
    return Binding(str(tenant_id), str(user_id), "totp")


class InvalidTotpCode(FilegateError):
    code = "invalid_totp"
    status = 400
    title = "Invalid TOTP code"


class IdentityService:
    def __init__(
        self,
        *,
        settings: Settings,
        db: Database,
        hashing: PasswordHashing,
        tokens: AccessTokens,
        revocations: Revocations,
        limiter: RateLimiter,
        lockout: Lockout,
        audit: AuditRecorder,
        profiles: ProfileCache,
        credentials: CredentialManager,
    ) -> None:
        self.settings = settings
        self.db = db
        self.hashing = hashing
        self.tokens = tokens
        self.revocations = revocations
        self.limiter = limiter
        self.lockout = lockout
        self.audit = audit
        self.profiles = profiles
        self.credentials = credentials

    def _totp_secret(self, tenant_id: uuid.UUID, user: User) -> str | None:
        """The user's TOTP secret; None (and a security alert) when the stored value does not open here."""
        assert user.totp_secret is not None
        try:
            return self.credentials.open(user.totp_secret, totp_binding(tenant_id, user.id)).decode()
        except CredentialError:
            log.warning(
                "security.alert",
                kind="totp_secret_unreadable",
                tenant_id=str(tenant_id),
                user_id=str(user.id),
            )
            return None

    # --- login ---------------------------------------------------------------------------------------
    async def login(
        self, *, tenant: str, email: str, password: str, totp_code: str | None, ctx: AuditContext
    ) -> tuple[TokenPair, dict[str, str]]:
        # Input that cannot name an account is refused with a 400, but only after it has counted as a
        # failed login (lockout, audit) against the account it imitates, like a wrong password would.
        refused: str | None = None
        slug = tenant.strip().lower()
        slug_ok = re.match(SLUG_PATTERN, slug) is not None
        if not slug_ok:
            refused, slug = "the tenant is not a tenant slug", account_key(slug)
        try:
            email = normalize_email(email)
        except InvalidInput as exc:
            refused, email = refused or str(exc), account_key(email)
        account = subject(slug, email)
        tenant_id = await self.db.tenant_for_slug(slug) if slug_ok else None
        await self.lockout.check(tenant_id, account)  # 423 wins over 429
        auth = self.settings.auth
        await self.limiter.hit("login-ip", subject(ctx.ip or ""), limit=auth.login_ip_limit)
        window = await self.limiter.hit("login-account", account, limit=auth.login_account_limit)

        if tenant_id is None:
            await self.hashing.verify(None, password)
            await self.lockout.failure(None, account)
            log.info("auth.login_failed", reason="unknown_tenant" if slug_ok else "invalid_input")
            if not slug_ok:
                raise ValidationFailed(refused, headers=window.headers())
            raise InvalidCredentials("invalid tenant, email or password", headers=window.headers())

        failure: tuple[str, FilegateError, uuid.UUID | None] | None = None
        if refused:
            failure = ("invalid_input", ValidationFailed(refused), None)
        pair: TokenPair | None = None
        async with self.db.tenant(tenant_id) as session:
            users = UserRepository(session, tenant_id)
            user = None if refused else await users.by_email(email)
            ok = await self.hashing.verify(user.password_hash if user else None, password)
            if failure is not None:
                pass
            elif user is None or not ok:
                failure = (
                    "unknown_user" if user is None else "bad_password",
                    InvalidCredentials("invalid tenant, email or password"),
                    user.id if user else None,
                )
            elif user.disabled or user.erased_at is not None:
                failure = ("disabled", InvalidCredentials("invalid tenant, email or password"), user.id)
            elif user.totp_enabled and user.totp_secret:
                if not totp_code:
                    failure = ("mfa_required", MfaRequired("a TOTP code is required"), user.id)
                elif not await self._second_factor(session, tenant_id, user, totp_code):
                    failure = ("invalid_totp", InvalidTotp("invalid TOTP code"), user.id)
            if failure is None and user is not None:
                if user.password_hash and self.hashing.needs_rehash(user.password_hash):
                    user.password_hash = await self.hashing.hash(password)
                    # Written now: the user row before the audit head, the one lock order of every path.
                    await session.flush()
                pair = await self._issue(session, tenant_id, user, family_id=None)
                await self.audit.record(
                    session,
                    tenant_id,
                    ctx,
                    action="auth.login",
                    outcome="success",
                    actor=Actor("user", str(user.id)),
                    target=Target("user", str(user.id)),
                    details={"method": "password" + ("+totp" if user.totp_enabled else "")},
                )

        if failure is not None:
            reason, error, user_id = failure
            locked = False if reason == "mfa_required" else await self.lockout.failure(tenant_id, account)
            actor = Actor("user", str(user_id)) if user_id else Actor("anonymous")
            await self.audit.record_alone(
                tenant_id,
                ctx,
                action="auth.login",
                outcome="failure",
                actor=actor,
                target=Target("user", str(user_id)) if user_id else None,
                details={"reason": reason},
            )
            if locked:
                # Brute force: the lockout is an audit event and a security alert for operators.
                log.warning("security.alert", kind="account_locked", tenant_id=str(tenant_id))
                await self.audit.record_alone(
                    tenant_id,
                    ctx,
                    action="auth.lockout",
                    outcome="denied",
                    actor=actor,
                    target=Target("user", str(user_id)) if user_id else None,
                    details={"seconds": self.lockout.seconds},
                )
            error.headers = {**window.headers(), **error.headers}
            raise error
        await self.lockout.success(tenant_id, account)
        assert pair is not None
        return pair, window.headers()

    async def _second_factor(
        self, session: AsyncSession, tenant_id: uuid.UUID, user: User, code: str
    ) -> bool:
        assert user.totp_secret is not None
        secret = self._totp_secret(tenant_id, user)
        step = totp.accepted_step(secret, code.strip(), last_step=user.totp_last_step) if secret else None
        if step is not None:
            # What was read above may already be spent by a login running alongside: the database decides.
            return await UserRepository(session, tenant_id).accept_totp_step(user.id, step)
        if totp.looks_like_recovery_code(code):
            return await RecoveryCodeRepository(session, tenant_id).consume(
                user.id, totp.recovery_digest(code), datetime.now(UTC)
            )
        return False

    async def issue_for(self, session: AsyncSession, tenant_id: uuid.UUID, user: User) -> TokenPair:
        """A fresh token pair for a user signed in another way (OpenID Connect), in the caller's transaction."""
        return await self._issue(session, tenant_id, user, family_id=None)

    async def _issue(
        self, session: AsyncSession, tenant_id: uuid.UUID, user: User, *, family_id: uuid.UUID | None
    ) -> TokenPair:
        family_id = family_id or uuid.uuid4()
        # Both carry the epoch read in this transaction: a revocation committing meanwhile kills them too.
        access, _ = self.tokens.issue(
            user_id=user.id,
            tenant_id=tenant_id,
            role=user.role,
            session_id=family_id,
            epoch=user.session_epoch,
        )
        cred = credentials.new_credential(credentials.REFRESH_PREFIX)
        await RefreshTokenRepository(session, tenant_id).add(
            RefreshToken(
                id=cred.id,
                user_id=user.id,
                family_id=family_id,
                session_epoch=user.session_epoch,
                token_hash=credentials.digest(cred.secret),
                expires_at=datetime.now(UTC) + timedelta(seconds=self.settings.auth.refresh_token_ttl),
            )
        )
        await self.revocations.remember_session(user.id, user.session_epoch, family_id)
        return TokenPair(access_token=access, refresh_token=str(cred), expires_in=self.tokens.ttl)

    # --- refresh -------------------------------------------------------------------------------------
    async def refresh(self, raw: str, ctx: AuditContext) -> tuple[TokenPair, dict[str, str]]:
        window = await self.limiter.hit(
            "refresh-ip", subject(ctx.ip or ""), limit=self.settings.auth.refresh_ip_limit
        )
        parsed = credentials.parse_credential(raw, credentials.REFRESH_PREFIX)
        tenant_id = await self.db.tenant_for_refresh_token(parsed.id) if parsed else None
        if parsed is None or tenant_id is None:
            raise InvalidToken(headers=window.headers())
        now = datetime.now(UTC)
        failure: FilegateError | None = None
        pair: TokenPair | None = None
        async with self.db.tenant(tenant_id) as session:
            tokens = RefreshTokenRepository(session, tenant_id)
            row = await tokens.lock(parsed.id)
            if row is None or not credentials.matches(parsed.secret, row.token_hash):
                failure = InvalidToken()
            elif row.used_at is not None:
                # A spent token came back: someone holds a copy. Burn the whole family, access tokens too.
                await self.revocations.revoke_family(session, tenant_id, row.family_id)
                await self.audit.record(
                    session,
                    tenant_id,
                    ctx,
                    action="auth.refresh",
                    outcome="failure",
                    actor=Actor("user", str(row.user_id)),
                    target=Target("user", str(row.user_id)),
                    details={"reason": "reuse", "family_revoked": True},
                )
                log.warning("security.alert", kind="refresh_token_reuse", tenant_id=str(tenant_id))
                failure = TokenReused("refresh token was already used; its session has been revoked")
            elif row.revoked_at is not None or row.expires_at <= now:
                failure = InvalidToken()
            else:
                user = await UserRepository(session, tenant_id).get_live(row.user_id)
                # A family started under an older epoch was revoked with it, even if a refresh racing the
                # revocation inserted this row after the revoking UPDATE had looked.
                if user is None or user.disabled or row.session_epoch != user.session_epoch:
                    await self.revocations.revoke_family(session, tenant_id, row.family_id)
                    failure = InvalidToken()
                else:
                    row.used_at = now
                    pair = await self._issue(session, tenant_id, user, family_id=row.family_id)
                    await self.audit.record(
                        session,
                        tenant_id,
                        ctx,
                        action="auth.refresh",
                        outcome="success",
                        actor=Actor("user", str(user.id)),
                        target=Target("user", str(user.id)),
                    )
        if failure is not None:
            failure.headers = {**window.headers(), **failure.headers}
            raise failure
        assert pair is not None
        return pair, window.headers()

    # --- logout --------------------------------------------------------------------------------------
    async def logout(self, principal: Principal, raw: str | None, ctx: AuditContext) -> None:
        """End the caller's session: the presented access token's family (its refresh tokens and every
        access token issued from them) and the family of the refresh token sent, if it is the caller's.
        A browser session is deleted by the caller."""
        parsed = credentials.parse_credential(raw, credentials.REFRESH_PREFIX) if raw else None
        tenant_id = principal.tenant_id
        async with self.db.tenant(tenant_id) as session:
            families: set[uuid.UUID] = set()
            if principal.session_id is not None:
                families.add(principal.session_id)
            if parsed is not None:
                row = await RefreshTokenRepository(session, tenant_id).lock(parsed.id)
                # Only the caller's own session: a token of someone else is ignored, not revealed.
                if (
                    row is not None
                    and row.user_id == principal.user_id
                    and credentials.matches(parsed.secret, row.token_hash)
                ):
                    families.add(row.family_id)
            for family_id in sorted(families):
                await self.revocations.revoke_family(session, tenant_id, family_id)
            await self.audit.record(
                session,
                principal.tenant_id,
                ctx,
                action="auth.logout",
                outcome="success",
                actor=principal.actor,
                target=Target("user", str(principal.user_id)),
                details={"session_revoked": bool(families)},
            )

    # --- TOTP ----------------------------------------------------------------------------------------
    async def enroll_totp(
        self, session: AsyncSession, principal: Principal, ctx: AuditContext
    ) -> TotpEnrollment:
        user = await UserRepository(session, principal.tenant_id).lock(principal.user_id)
        if user is None:
            raise NotFound()
        if user.totp_enabled:
            raise Conflict("TOTP is already enabled for this account")
        secret = totp.new_secret()
        # Stored sealed by the credential manager, bound to this tenant, user and purpose.
        user.totp_secret = self.credentials.seal(secret.encode(), totp_binding(principal.tenant_id, user.id))
        user.totp_last_step = 0
        await self.audit.record(
            session,
            principal.tenant_id,
            ctx,
            action="auth.mfa",
            outcome="success",
            actor=principal.actor,
            target=Target("user", str(user.id)),
            details={"step": "enroll"},
        )
        uri = totp.provisioning_uri(secret, account=user.email or str(user.id), issuer="Filegate")
        return TotpEnrollment(secret=secret, otpauth_uri=uri)

    async def confirm_totp(
        self, session: AsyncSession, principal: Principal, code: str, ctx: AuditContext
    ) -> TotpConfirmed:
        tenant_id = principal.tenant_id
        user = await UserRepository(session, tenant_id).lock(principal.user_id)
        if user is None:
            raise NotFound()
        if user.totp_enabled:
            raise Conflict("TOTP is already enabled for this account")
        if not user.totp_secret:
            raise Conflict("start enrollment first")
        secret = self._totp_secret(tenant_id, user)
        step = totp.accepted_step(secret, code.strip(), last_step=user.totp_last_step) if secret else None
        if step is None or not await UserRepository(session, tenant_id).accept_totp_step(user.id, step):
            raise InvalidTotpCode("the code does not match; check the device clock")
        user.totp_enabled = True
        codes = totp.new_recovery_codes()
        await RecoveryCodeRepository(session, tenant_id).replace(
            user.id, [totp.recovery_digest(c) for c in codes]
        )
        await self.audit.record(
            session,
            tenant_id,
            ctx,
            action="auth.mfa",
            outcome="success",
            actor=principal.actor,
            target=Target("user", str(user.id)),
            details={"step": "confirm"},
        )
        return TotpConfirmed(enabled=True, recovery_codes=codes)

    async def me(self, principal: Principal) -> Me:
        """The caller: the token carries who and what, the profile cache the email (the database on a miss)."""
        profile = self.profiles.get(principal.user_id)
        if profile is None:
            async with self.db.tenant(principal.tenant_id) as session:
                user = await UserRepository(session, principal.tenant_id).get_live(principal.user_id)
            if user is None:
                raise NotFound()
            profile = Profile(email=user.email)
            self.profiles.put(principal.user_id, profile)
        return Me(
            user_id=principal.user_id,
            tenant_id=principal.tenant_id,
            email=profile.email,
            role=principal.role.value,
            permissions=principal.permission_names,
        )
