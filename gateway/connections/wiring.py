"""Building the connection services once, the same way in the gateway and in the worker."""

from __future__ import annotations

from dataclasses import dataclass

from connectors.credentials import CredentialManager
from connectors.factory import Endpoints
from gateway.audit import AuditRecorder
from gateway.connections.media import MediaLinks
from gateway.connections.publishing import PublishingService
from gateway.connections.remote import RemoteCalls
from gateway.connections.service import ConnectionService
from gateway.db import Database
from gateway.settings import Settings
from gateway.uploads.delivery import DeliveryPipeline
from gateway.uploads.quarantine import QuarantineStore
from tenants.tokens import KeyRing


def endpoints(settings: Settings) -> Endpoints:
    c = settings.connectors
    return Endpoints(
        local_root=settings.server.data_dir.resolve() / "storage",
        login_url=c.login_url,
        graph_url=c.graph_url,
        instagram_url=c.instagram_url,
        allow_private=c.allow_private,
        azure_api_version=c.azure_api_version,
        ca_bundle=c.ca_bundle,
        instagram_poll_interval=c.instagram_poll_ms / 1000,
        instagram_max_wait=float(c.instagram_max_wait),
    )


@dataclass(frozen=True, slots=True)
class ConnectionServices:
    connections: ConnectionService
    publishing: PublishingService
    delivery: DeliveryPipeline


def connection_services(
    settings: Settings,
    *,
    db: Database,
    audit: AuditRecorder,
    store: QuarantineStore,
    ring: KeyRing,
    credentials: CredentialManager,
) -> ConnectionServices:
    c = settings.connectors
    # One per process: the cap protects what the process owns (its threads, its job slots, its sockets).
    remote = RemoteCalls(timeout=float(c.timeout), per_tenant=c.concurrency_per_tenant)
    connections = ConnectionService(
        db=db, audit=audit, credentials=credentials, endpoints=endpoints(settings), remote=remote
    )
    publishing = PublishingService(
        db=db,
        store=store,
        connections=connections,
        media=MediaLinks(
            ring,
            issuer=settings.auth.issuer,
            public_url=settings.server.public_url,
            ttl=c.media_url_ttl,
        ),
        audit=audit,
        publish_deadline=float(c.instagram_max_wait + c.timeout),
    )
    delivery = DeliveryPipeline(
        db=db,
        store=store,
        connections=connections,
        publishing=publishing,
        audit=audit,
        settings=settings.connectors,
    )
    return ConnectionServices(connections, publishing, delivery)


def connection_services_for(settings: Settings, db: Database) -> ConnectionServices:
    """The same services for a process outside the gateway (the worker, tools): keys and store from settings."""
    from gateway.keys import load_credentials, load_keyring
    from gateway.uploads.quarantine import quarantine_store

    return connection_services(
        settings,
        db=db,
        audit=AuditRecorder(db),
        store=quarantine_store(settings),
        ring=load_keyring(settings),
        credentials=load_credentials(settings),
    )
