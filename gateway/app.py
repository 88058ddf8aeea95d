"""`create_app(settings)`: the one way to build the gateway, in production and in tests."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import RedocRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.plugins.prometheus import PrometheusConfig
from litestar.types import ControllerRouterHandler
from redis.asyncio import Redis

from gateway.api_keys.controllers import ApiKeyController
from gateway.api_keys.service import ApiKeyService
from gateway.audit import AuditRecorder
from gateway.audit.controllers import AuditController
from gateway.connections.controllers import ConnectionController, media_link
from gateway.connections.wiring import connection_services
from gateway.db import Database, create_engine
from gateway.deps import DEPENDENCIES
from gateway.errors import EXCEPTION_HANDLERS
from gateway.health import MetricsController, live, ready
from gateway.identity.controllers import AuthController, jwks, me
from gateway.identity.profile import ProfileCache
from gateway.identity.service import IdentityService
from gateway.keys import load_credentials, load_keyring, load_record_seal
from gateway.oidc.controllers import IdentityProviderController, OidcLoginController
from gateway.oidc.discovery import Discovery
from gateway.oidc.service import OidcService
from gateway.operator.controllers import create_tenant
from gateway.operator.service import TenantService
from gateway.policy.controllers import PolicyController
from gateway.policy.service import PolicyService
from gateway.request import FilegateRequest, refuse_unreadable_text
from gateway.security.authn import AuthenticationMiddleware, Authenticator
from gateway.security.cors import Cors
from gateway.security.headers import EdgeMiddleware
from gateway.security.lockout import Lockout
from gateway.security.ratelimit import RateLimiter
from gateway.security.revocation import Revocations
from gateway.security.sessions import SessionStore
from gateway.settings import Settings
from gateway.tus.controllers import TusController, tus_create, tus_options
from gateway.tus.service import TusService
from gateway.uploads.controllers import UploadController
from gateway.uploads.quarantine import quarantine_store
from gateway.uploads.service import UploadService
from gateway.users.controllers import UserController, change_password
from gateway.users.service import UserService
from gateway.web.controllers import static_asset, upload_page
from scanning.clamav import ClamdClient
from tenants.passwords import PasswordHashing
from tenants.tokens import AccessTokens
from workers.queue import ArqQueue

ROUTES: list[ControllerRouterHandler] = [
    live,
    ready,
    MetricsController,
    jwks,
    AuthController,
    me,
    change_password,
    create_tenant,
    UserController,
    ApiKeyController,
    PolicyController,
    AuditController,
    UploadController,
    tus_options,  # standalone, see gateway/tus/controllers.py
    tus_create,
    TusController,
    ConnectionController,
    media_link,
    OidcLoginController,
    IdentityProviderController,
    upload_page,
    static_asset,
]


def create_app(settings: Settings) -> Litestar:
    """Build the gateway. Engines, pools and services are created in the lifespan, never at import."""
    settings.require("DATABASE_URL", "REDIS_URL")
    ring = load_keyring(settings)
    credentials = load_credentials(settings)
    seal = load_record_seal(settings)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        state = app.state
        db = Database(create_engine(settings))
        redis: Redis = Redis.from_url(
            settings.redis.url or "",
            decode_responses=True,
            socket_timeout=5,
            socket_connect_timeout=5,
            health_check_interval=30,
        )
        prefix = settings.redis.key_prefix
        auth = settings.auth
        tokens = AccessTokens(ring, issuer=auth.issuer, audience=auth.audience, ttl=auth.access_token_ttl)
        hashing = PasswordHashing(time_cost=auth.argon2_time_cost, memory_kib=auth.argon2_memory_kib)
        audit = AuditRecorder(db)
        revocations = Revocations(redis, prefix, db, seal)
        sessions = SessionStore(redis, prefix, seal, idle=auth.session_idle, absolute=auth.session_max)
        policy = PolicyService(audit=audit)
        profiles = ProfileCache()
        queue = await ArqQueue.connect(settings)
        clamd = ClamdClient(settings.scanning.clamd_url) if settings.scanning.clamd_url else None
        store = quarantine_store(settings)
        uploads = UploadService(db=db, store=store, queue=queue, audit=audit, policy=policy)
        wired = connection_services(
            settings, db=db, audit=audit, store=store, ring=ring, credentials=credentials
        )
        limiter = RateLimiter(redis, prefix)
        wired.connections.remote.install(asyncio.get_running_loop())
        identity = IdentityService(
            settings=settings,
            db=db,
            hashing=hashing,
            tokens=tokens,
            revocations=revocations,
            limiter=limiter,
            lockout=Lockout(
                db, redis, prefix, threshold=auth.lockout_threshold, seconds=auth.lockout_seconds
            ),
            audit=audit,
            profiles=profiles,
            credentials=credentials,
        )
        state.update(
            settings=settings,
            db=db,
            redis=redis,
            audit=audit,
            jwks=ring.jwks(),
            limiter=limiter,
            authenticator=Authenticator(
                tokens=tokens,
                revocations=revocations,
                db=db,
                audit=audit,
                redis=redis,
                seal=seal,
                sessions=sessions,
            ),
            sessions=sessions,
            identity=identity,
            oidc=OidcService(
                db=db,
                audit=audit,
                credentials=credentials,
                discovery=Discovery(allow_private=settings.connectors.allow_private),
                redis=redis,
                prefix=prefix,
                seal=seal,
                sessions=sessions,
                identity=identity,
            ),
            users=UserService(hashing=hashing, revocations=revocations, audit=audit, profiles=profiles),
            api_keys=ApiKeyService(audit=audit, revocations=revocations),
            policy=policy,
            tenants=TenantService(db=db, hashing=hashing, policy=policy, audit=audit),
            uploads=uploads,
            tus=TusService(uploads=uploads, redis=redis, prefix=prefix, expiry=settings.scanning.tus_expiry),
            clamd=clamd,
            connections=wired.connections,
            publishing=wired.publishing,
        )
        # Everything built so far lives as long as the process: move it out of the collector's way, so
        # full collections stay short and do not show up as latency spikes.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            await queue.close()
            await redis.aclose()
            await db.dispose()

    cors = Cors(public_url=settings.server.public_url)  # its caches live as long as this app
    prometheus = PrometheusConfig(app_name="filegate", group_path=True, exclude=["^/metrics"])
    app = Litestar(
        route_handlers=ROUTES,
        lifespan=[lifespan],
        dependencies=DEPENDENCIES,
        # CORS after authentication: it needs the principal's tenant.
        middleware=[prometheus.middleware, AuthenticationMiddleware, cors.middleware],
        exception_handlers=EXCEPTION_HANDLERS,
        before_request=refuse_unreadable_text,  # path and query text; bodies are checked by their types
        request_max_body_size=settings.server.max_body_size,
        openapi_config=OpenAPIConfig(
            title="Filegate",
            version="1.0.0",
            description="Multi-tenant file and connector gateway.",
            path="/schema",
            render_plugins=[RedocRenderPlugin(path="/")],
            components=Components(
                security_schemes={
                    "bearer": SecurityScheme(
                        type="http",
                        scheme="bearer",
                        description="An access JWT or an API key `fg_<id>_<secret>`",
                    ),
                }
            ),
            security=[{"bearer": []}],
        ),
        debug=False,
        request_class=FilegateRequest,
        logging_config=None,  # ours: JSON with redaction (gateway.logging)
    )
    app.state.settings = settings  # readable before the lifespan runs (guards of early requests)
    # Outside Litestar's exception handling, so 404s, 405s and 500s get the same headers and request id.
    # Preflights are answered inside the edge (request id, headers) but before routing reaches a handler.
    app.asgi_handler = EdgeMiddleware(cors.preflight(app.asgi_handler), hsts=settings.behind_tls)
    return app
