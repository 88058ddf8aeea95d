"""OpenID Connect sign-in for a tenant's users, and the tenant's provider configuration.

Login: authorization code flow with PKCE (S256). `state` (single use, ten minutes) and `nonce` live in
Redis under SHA-256 of the state, together with the PKCE verifier and a hash of a random value that only
the browser that started the login holds (the `__Host-filegate_oidc` cookie), sealed for its key
(`redis_records`): a state replayed, expired, arriving in another browser, or written or edited by anyone
but the servers (its tenant, binding or redirect target) is refused. The ID token is validated (signature by the provider's JWKS,
pinned algorithms, iss, aud, exp, iat, nonce, azp), `email_verified` is honoured, and a user is found by
the provider's `sub` only, never by email; an unknown user is created with the provider's default role
when the provider allows it and no account holds that email. Redirect targets after login are relative
paths or origins the provider's configuration lists: never an open redirect.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
import msgspec
import structlog
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.httpx_client import AsyncOAuth2Client
from litestar.datastructures import Cookie
from redis.asyncio import Redis
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from connectors.base import ConnectorError
from connectors.credentials import Binding, CredentialError, CredentialManager
from gateway.audit import Actor, AuditContext, AuditRecorder, Target
from gateway.db import Database
from gateway.errors import Conflict, FilegateError, NotFound, ValidationFailed
from gateway.identity.schemas import TokenPair
from gateway.identity.service import IdentityService
from gateway.oidc.discovery import Discovery, DiscoveryError
from gateway.oidc.schemas import GOOGLE_ISSUER, ProviderIn, ProviderList, ProviderOut
from gateway.security.principal import Principal
from gateway.security.redis_records import RecordSeal
from gateway.security.sessions import SessionStore, host_cookie
from tenants import oidc as idtoken
from tenants.inputs import InvalidInput, normalize_email
from tenants.models import IdentityProvider, User, UserIdentity

log = structlog.get_logger("filegate.oidc")
STATE_TTL = 600
BINDING_COOKIE = "__Host-filegate_oidc"
DEFAULT_REDIRECT = "/app/upload"
SCOPE = "openid email profile"
_CONTROL = re.compile(r"[\x00-\x1f\x7f\\]")


class InvalidState(FilegateError):
    code = "invalid_state"
    status = 400
    title = "Sign-in state missing, expired, replayed or from another browser"


class InvalidRedirect(FilegateError):
    code = "invalid_redirect"
    status = 400
    title = "Redirect target not allowed"


class OidcFailed(FilegateError):
    code = "oidc_failed"
    status = 401
    title = "Sign-in with the identity provider failed"


class ProviderUnavailable(FilegateError):
    code = "provider_unavailable"
    status = 502
    title = "The identity provider is unavailable or misconfigured"


class PendingLogin(msgspec.Struct, frozen=True):
    tenant_id: uuid.UUID
    provider_id: uuid.UUID
    provider: str
    nonce: str
    verifier: str
    binding: str  # SHA-256 of the browser's binding cookie
    redirect_to: str
    mode: Literal["session", "tokens"]


@dataclass(frozen=True, slots=True)
class LoginStart:
    authorization_url: str
    binding_cookie: str


@dataclass(frozen=True, slots=True)
class LoginDone:
    mode: Literal["session", "tokens"]
    redirect_to: str
    session_id: str | None = None
    tokens: TokenPair | None = None


def _sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def binding_cookie(value: str, *, max_age: int = STATE_TTL) -> Cookie:
    return host_cookie(BINDING_COOKIE, value, max_age=max_age)


def secret_binding(tenant_id: uuid.UUID, provider_id: uuid.UUID) -> Binding:
    return Binding(str(tenant_id), f"idp-{provider_id}", "client_secret")


def safe_redirect(target: str | None, allowed_origins: list[str]) -> str:
    """A relative path on this origin, or an absolute URL on an origin the provider lists; else refused."""
    if not target:
        return DEFAULT_REDIRECT
    if len(target) > 2048 or _CONTROL.search(target):
        raise InvalidRedirect("the redirect target contains characters that are not allowed")
    if target.startswith("/") and not target.startswith("//"):
        return target
    parts = urlsplit(target)
    if parts.scheme in ("https", "http") and parts.hostname and not parts.username and not parts.password:
        origin = f"{parts.scheme}://{parts.netloc}".lower()
        if origin in allowed_origins:
            return target
    raise InvalidRedirect("the redirect target is neither a path here nor an allowed origin")


class OidcService:
    def __init__(
        self,
        *,
        db: Database,
        audit: AuditRecorder,
        credentials: CredentialManager,
        discovery: Discovery,
        redis: Redis,
        prefix: str,
        seal: RecordSeal,
        sessions: SessionStore,
        identity: IdentityService,
    ) -> None:
        self.db = db
        self.audit = audit
        self.credentials = credentials
        self.discovery = discovery
        self._redis = redis
        self._prefix = prefix
        self._seal = seal
        self.sessions = sessions
        self.identity = identity

    # --- provider configuration (Admin) ----------------------------------------------------------------
    def _out(self, p: IdentityProvider, base_url: str, slug: str | None) -> ProviderOut:
        tenant = f"?tenant={slug}" if slug else ""
        return ProviderOut(
            id=p.id,
            name=p.name,
            issuer=p.issuer,
            client_id=p.client_id,
            client_secret_set=p.client_secret is not None,
            allowed_domains=list(p.allowed_domains),
            default_role=p.default_role,
            create_users=p.create_users,
            redirect_origins=list(p.redirect_origins),
            login_url=f"{base_url}/v1/auth/oidc/{p.name}/login{tenant}",
            callback_url=callback_url(base_url, p.name),
            created_at=p.created_at,
            updated_at=p.updated_at,
        )

    async def _provider(self, session: AsyncSession, tenant_id: uuid.UUID, name: str) -> IdentityProvider:
        found = (
            await session.execute(
                select(IdentityProvider).where(
                    IdentityProvider.tenant_id == tenant_id, IdentityProvider.name == name
                )
            )
        ).scalar_one_or_none()
        if found is None:
            raise NotFound()
        return found

    async def put_provider(
        self,
        session: AsyncSession,
        principal: Principal,
        name: str,
        data: ProviderIn,
        ctx: AuditContext,
        *,
        base_url: str,
        slug: str | None,
    ) -> ProviderOut:
        if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,63}", name):
            raise ValidationFailed("the provider name must be lowercase letters, digits, '-' or '_'")
        issuer = data.issuer or (GOOGLE_ISSUER if data.preset == "google" or name == "google" else None)
        if issuer is None:
            raise ValidationFailed("issuer is required (or preset: google)")
        try:
            provider = await self._provider(session, principal.tenant_id, name)
        except NotFound:
            provider = IdentityProvider(id=uuid.uuid4(), tenant_id=principal.tenant_id, name=name)
            session.add(provider)
        provider.issuer = issuer
        provider.client_id = data.client_id
        if data.client_secret is not None:
            provider.client_secret = self.credentials.seal(
                data.client_secret.encode(), secret_binding(principal.tenant_id, provider.id)
            )
        provider.allowed_domains = sorted(set(data.allowed_domains))
        provider.default_role = data.default_role
        provider.create_users = data.create_users
        provider.redirect_origins = sorted(set(data.redirect_origins))
        try:
            async with session.begin_nested():
                await session.flush()
        except IntegrityError:
            raise Conflict("a provider with this name was created at the same time") from None
        await self.audit.record(
            session,
            principal.tenant_id,
            ctx,
            action="identity_provider.update",
            outcome="success",
            actor=principal.actor,
            target=Target("identity_provider", str(provider.id)),
            details={"name": name, "issuer": issuer, "secret_changed": data.client_secret is not None},
        )
        await session.refresh(provider)
        return self._out(provider, base_url, slug)

    async def list_providers(
        self, session: AsyncSession, principal: Principal, *, base_url: str, slug: str | None
    ) -> ProviderList:
        rows = (
            await session.execute(
                select(IdentityProvider)
                .where(IdentityProvider.tenant_id == principal.tenant_id)
                .order_by(IdentityProvider.name)
            )
        ).scalars()
        return ProviderList(items=[self._out(p, base_url, slug) for p in rows])

    async def get_provider(
        self, session: AsyncSession, principal: Principal, name: str, *, base_url: str, slug: str | None
    ) -> ProviderOut:
        return self._out(await self._provider(session, principal.tenant_id, name), base_url, slug)

    async def delete_provider(
        self, session: AsyncSession, principal: Principal, name: str, ctx: AuditContext
    ) -> None:
        provider = await self._provider(session, principal.tenant_id, name)
        # Compare-and-set: a delete running alongside finds nothing, and records nothing.
        removed = await session.execute(
            delete(IdentityProvider)
            .where(IdentityProvider.tenant_id == principal.tenant_id, IdentityProvider.id == provider.id)
            .returning(IdentityProvider.id)
        )
        if removed.scalar_one_or_none() is None:
            raise NotFound()
        await self.audit.record(
            session,
            principal.tenant_id,
            ctx,
            action="identity_provider.delete",
            outcome="success",
            actor=principal.actor,
            target=Target("identity_provider", str(provider.id)),
            details={"name": name},
        )

    # --- login -----------------------------------------------------------------------------------------
    def _state_key(self, state: str) -> str:
        return f"{self._prefix}oidc:state:{_sha(state)}"

    def _client(self, provider: IdentityProvider, redirect_uri: str) -> AsyncOAuth2Client:
        secret = None
        if provider.client_secret is not None:
            try:
                secret = self.credentials.open(
                    provider.client_secret, secret_binding(provider.tenant_id, provider.id)
                ).decode()
            except CredentialError:
                log.error("oidc.secret_unreadable", provider_id=str(provider.id))
                raise ProviderUnavailable(
                    "the provider's client secret does not open; set it again"
                ) from None
        return AsyncOAuth2Client(
            client_id=provider.client_id,
            client_secret=secret,
            redirect_uri=redirect_uri,
            scope=SCOPE,
            code_challenge_method="S256",
            timeout=10,
            transport=self.discovery.transport(),
            trust_env=False,
        )

    async def begin(
        self, *, slug: str, name: str, redirect_to: str | None, mode: str | None, base_url: str
    ) -> LoginStart:
        tenant_id = await self.db.tenant_for_slug(slug.strip().lower()) if slug else None
        if tenant_id is None:
            raise NotFound()
        async with self.db.tenant(tenant_id) as session:
            provider = await self._provider(session, tenant_id, name)
        target = safe_redirect(redirect_to, list(provider.redirect_origins))
        if mode not in (None, "session", "tokens"):
            raise ValidationFailed("response must be 'session' or 'tokens'")
        try:
            meta = await self.discovery.metadata(provider.issuer)
        except DiscoveryError as exc:
            raise ProviderUnavailable(str(exc)) from None
        state, nonce, verifier = (
            secrets.token_urlsafe(32),
            secrets.token_urlsafe(32),
            secrets.token_urlsafe(64),
        )
        binding = secrets.token_urlsafe(32)
        pending = PendingLogin(
            tenant_id=tenant_id,
            provider_id=provider.id,
            provider=name,
            nonce=nonce,
            verifier=verifier,
            binding=_sha(binding),
            redirect_to=target,
            mode="tokens" if mode == "tokens" else "session",
        )
        key = self._state_key(state)
        sealed = self._seal.seal(key, msgspec.json.encode(pending).decode(), ttl=STATE_TTL)
        await self._redis.set(key, sealed, ex=STATE_TTL)
        async with self._client(provider, callback_url(base_url, name)) as client:
            url, _ = client.create_authorization_url(
                meta.authorization_endpoint, state=state, nonce=nonce, code_verifier=verifier
            )
        return LoginStart(authorization_url=str(url), binding_cookie=binding)

    async def complete(
        self,
        *,
        name: str,
        params: dict[str, str],
        binding: str | None,
        ctx: AuditContext,
        base_url: str,
    ) -> LoginDone:
        state = params.get("state")
        if not state or len(state) > 256:
            raise InvalidState("the sign-in state is missing")
        key = self._state_key(state)
        stored = await self._redis.getdel(key)  # single use, whatever happens next
        payload = self._seal.open(key, stored) if stored is not None else None
        if not isinstance(payload, str):
            raise InvalidState("the sign-in state is unknown, expired or already used")
        try:
            pending = msgspec.json.decode(payload, type=PendingLogin)
        except msgspec.DecodeError:  # sealed by another version of this code
            raise InvalidState("the sign-in state is unknown, expired or already used") from None
        if (
            pending.provider != name
            or binding is None
            or not hmac.compare_digest(pending.binding, _sha(binding))
        ):
            await self._fail(pending, ctx, "state_binding")
            raise InvalidState("the sign-in was started in another browser")
        if "error" in params or not params.get("code"):
            await self._fail(pending, ctx, f"provider_error:{params.get('error', 'no_code')[:40]}")
            raise OidcFailed("the identity provider did not sign you in")
        async with self.db.tenant(pending.tenant_id) as session:
            provider = await session.get(IdentityProvider, pending.provider_id)
        if provider is None:
            raise InvalidState("the provider was removed during sign-in")
        claims = await self._exchange(provider, pending, params["code"], ctx, base_url)
        return await self._sign_in(provider, pending, claims, ctx)

    async def _exchange(
        self, provider: IdentityProvider, pending: PendingLogin, code: str, ctx: AuditContext, base_url: str
    ) -> dict[str, Any]:
        try:
            meta = await self.discovery.metadata(provider.issuer)
            async with self._client(provider, callback_url(base_url, pending.provider)) as client:
                token = await client.fetch_token(
                    meta.token_endpoint,
                    code=code,
                    code_verifier=pending.verifier,
                    grant_type="authorization_code",
                )
            raw_id_token = token.get("id_token")
            if not isinstance(raw_id_token, str):
                raise idtoken.InvalidIdToken("no id_token")
            # A key we do not know may be one the provider rotated in since we cached its JWKS: refetch once.
            for refresh in (False, True):
                keys = await self.discovery.keys(meta, refresh=refresh)
                try:
                    return idtoken.validate(
                        raw_id_token,
                        keys,
                        issuer=provider.issuer,
                        client_id=provider.client_id,
                        nonce=pending.nonce,
                    )
                except idtoken.InvalidIdToken as exc:
                    if refresh or "signature" not in str(exc):
                        raise
            raise AssertionError("unreachable")  # pragma: no cover
        except idtoken.InvalidIdToken as exc:
            await self._fail(pending, ctx, f"id_token:{exc}"[:80])
            raise OidcFailed("the identity provider's ID token was not acceptable") from None
        except (OAuthError, httpx.HTTPError, ConnectorError, DiscoveryError, ValueError, KeyError) as exc:
            await self._fail(pending, ctx, f"token_exchange:{type(exc).__name__}")
            raise OidcFailed("the identity provider did not complete the sign-in") from None

    async def _sign_in(
        self, provider: IdentityProvider, pending: PendingLogin, claims: dict[str, Any], ctx: AuditContext
    ) -> LoginDone:
        subject = str(claims["sub"])[:255]
        email = _email_claim(claims.get("email"))
        verified = claims.get("email_verified") is True
        domain = email.rsplit("@", 1)[-1] if email else None
        if provider.allowed_domains and (not verified or domain not in provider.allowed_domains):
            await self._fail(pending, ctx, "domain_not_allowed" if verified else "email_unverified")
            raise OidcFailed("this account's verified email domain is not allowed here")
        created = False
        async with self.db.tenant(pending.tenant_id) as session:
            user: User | None = None
            failure = ""
            tokens = None
            link = await self._link(session, pending.tenant_id, provider.id, subject)
            if link is not None:
                user = await session.get(User, link.user_id)
            else:
                try:
                    async with session.begin_nested():
                        user = await self._create_user(
                            session, provider, pending, subject, email, verified, ctx
                        )
                    created = True
                except _Refused as refused:
                    failure = refused.reason
                except IntegrityError:
                    # Another sign-in of the same subject (a second tab) created the account between our
                    # look and our insert, which waited for it: that account is this one. Anything else
                    # that collided (an email taken meanwhile) is an existing account, never linked.
                    link = await self._link(session, pending.tenant_id, provider.id, subject)
                    if link is not None:
                        user = await session.get(User, link.user_id)
                    else:
                        failure = "account_exists"
            if failure:
                pass
            elif user is None or user.disabled or user.erased_at is not None:
                failure = "user_disabled"
            else:
                if pending.mode == "tokens":
                    tokens = await self.identity.issue_for(session, pending.tenant_id, user)
                await self.audit.record(
                    session,
                    pending.tenant_id,
                    ctx,
                    action="auth.login",
                    outcome="success",
                    actor=Actor("user", str(user.id)),
                    target=Target("user", str(user.id)),
                    details={"method": "oidc", "provider": provider.name, "created": created},
                )
        if failure:
            await self._fail(pending, ctx, failure)
            raise OidcFailed("this account cannot sign in")
        assert user is not None
        if pending.mode == "tokens":
            return LoginDone(mode="tokens", redirect_to=pending.redirect_to, tokens=tokens)
        session_id, _ = await self.sessions.create(
            pending.tenant_id, user.id, user.role, epoch=user.session_epoch
        )
        return LoginDone(mode="session", redirect_to=pending.redirect_to, session_id=session_id)

    @staticmethod
    async def _link(
        session: AsyncSession, tenant_id: uuid.UUID, provider_id: uuid.UUID, subject: str
    ) -> UserIdentity | None:
        result = await session.execute(
            select(UserIdentity).where(
                UserIdentity.tenant_id == tenant_id,
                UserIdentity.provider_id == provider_id,
                UserIdentity.subject == subject,
            )
        )
        return result.scalar_one_or_none()

    async def _create_user(
        self,
        session: AsyncSession,
        provider: IdentityProvider,
        pending: PendingLogin,
        subject: str,
        email: object,
        verified: bool,
        ctx: AuditContext,
    ) -> User:
        reason = None
        if not provider.create_users:
            reason = "user_not_found"
        elif not isinstance(email, str) or not verified:
            reason = "email_unverified"
        else:
            taken = await session.execute(
                select(User.id).where(User.tenant_id == pending.tenant_id, User.email == email)
            )
            if taken.scalar_one_or_none() is not None:
                # Never link by email: the existing account's owner has not proven this identity is theirs.
                reason = "account_exists"
        if reason is not None:
            raise _Refused(reason)
        assert isinstance(email, str)
        user = User(
            id=uuid.uuid4(),
            tenant_id=pending.tenant_id,
            email=email,
            password_hash=None,
            role=provider.default_role,
        )
        session.add(user)
        await session.flush()
        session.add(
            UserIdentity(
                tenant_id=pending.tenant_id, user_id=user.id, provider_id=provider.id, subject=subject
            )
        )
        await session.flush()
        await self.audit.record(
            session,
            pending.tenant_id,
            ctx,
            action="user.create",
            outcome="success",
            actor=Actor("system", f"oidc:{provider.name}"),
            target=Target("user", str(user.id)),
            details={"role": provider.default_role, "via": "oidc"},
        )
        return user

    async def _fail(self, pending: PendingLogin, ctx: AuditContext, reason: str) -> None:
        log.info("oidc.login_failed", provider=pending.provider, reason=reason)
        await self.audit.record_alone(
            pending.tenant_id,
            ctx,
            action="auth.login",
            outcome="failure",
            actor=Actor("anonymous"),
            target=Target("identity_provider", str(pending.provider_id)),
            details={"method": "oidc", "provider": pending.provider, "reason": reason},
        )


class _Refused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def callback_url(base_url: str, name: str) -> str:
    return f"{base_url.rstrip('/')}/v1/auth/oidc/{name}/callback"


def _email_claim(value: object) -> str | None:
    """The ID token's email in the one stored form; one with invisible characters names nobody."""
    if not isinstance(value, str):
        return None
    try:
        return normalize_email(value)
    except InvalidInput:
        return None
