"""Connections: records with sealed secrets, the connector built from them, and brokered object access.

Secrets are sealed per field under `tenant_id|connection_id|field` when written and opened only to build
a connector for one call (a test, a brokered request, a delivery); they are never returned, not even
masked, and never logged. Listing cursors are sealed too (bound to the tenant, the connection and the
prefix), so a client can never hand a connector a continuation URL or token of its own making.

Brokered calls never hold a transaction across the remote service: the record is read in a short
transaction of its own, the call runs under the tenant's slot and a deadline (gateway/connections/remote.py),
and its audit event is written in another short transaction.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec
import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from connectors.base import Connector, ConnectorError, ObjectInfo, Publisher, Unsupported
from connectors.credentials import Binding, CredentialError, CredentialManager
from connectors.endpoints import check_endpoint_soon
from connectors.factory import Endpoints, open_connector
from connectors.models import Connection, ConnectionRepository
from connectors.paths import ObjectRoot
from connectors.schemas import (
    KINDS,
    AzureBlobConfig,
    Config,
    ConnectionSpec,
    S3Config,
    base_of,
    check_name,
    config_dict,
    decode_config,
    decode_secrets,
    secret_values,
)
from gateway.audit import AuditContext, AuditRecorder, Target
from gateway.connections.remote import Download, RemoteCalls, close_quietly
from gateway.connections.schemas import (
    ConnectionOut,
    ConnectionPage,
    ConnectionPatch,
    ConnectionTest,
    ObjectOut,
    ObjectPage,
)
from gateway.db import Database
from gateway.errors import Conflict, FilegateError, NotFound, ValidationFailed
from gateway.security.principal import Principal
from tenants.repository import InvalidCursor

log = structlog.get_logger("filegate.connections")
MAX_PAGE = 1000
DEFAULT_PAGE = 100


class SecretsUnreadable(FilegateError):
    code = "secrets_unreadable"
    status = 409
    title = "The connection's secrets cannot be opened"


def connection_out(c: Connection) -> ConnectionOut:
    return ConnectionOut(
        id=c.id,
        name=c.name,
        kind=c.kind,
        config=dict(c.config),
        secret_fields=sorted(c.secrets),
        created_at=c.created_at,
        updated_at=c.updated_at,
    )


def secret_binding(tenant_id: uuid.UUID, connection_id: uuid.UUID, field: str) -> Binding:
    return Binding(str(tenant_id), str(connection_id), field)


@dataclass(slots=True)
class Opened:
    """A connection's connector for one use; close it when done."""

    connection: Connection
    connector: Connector | Publisher
    root: ObjectRoot

    def storage(self) -> Connector:
        if not isinstance(self.connector, Connector):
            raise Unsupported("this kind of connection does not store objects")
        return self.connector

    def publisher(self) -> Publisher:
        if not isinstance(self.connector, Publisher):
            raise Unsupported("this kind of connection does not publish media")
        return self.connector

    async def aclose(self) -> None:
        await close_quietly(self.connector.aclose)


class ConnectionService:
    def __init__(
        self,
        *,
        db: Database,
        audit: AuditRecorder,
        credentials: CredentialManager,
        endpoints: Endpoints,
        remote: RemoteCalls,
    ) -> None:
        self.db = db
        self.audit = audit
        self.credentials = credentials
        self.endpoints = endpoints
        self.remote = remote

    # --- records -------------------------------------------------------------------------------------
    async def create(
        self, session: AsyncSession, principal: Principal, spec: ConnectionSpec, ctx: AuditContext
    ) -> ConnectionOut:
        kind = _kind_of(spec)
        name = _name(spec.name)
        await self._check_endpoints(principal.tenant_id, spec.config)
        connection_id = uuid.uuid4()
        values = secret_values(spec.secrets)
        connection = Connection(
            id=connection_id,
            name=name,
            kind=kind,
            config=config_dict(spec.config),
            secrets=self._seal(principal.tenant_id, connection_id, values),
            created_by=principal.user_id,
        )
        try:
            async with session.begin_nested():
                await ConnectionRepository(session, principal.tenant_id).add(connection)
        except IntegrityError:
            raise Conflict("a connection with this name exists") from None
        await self._record(
            session,
            principal,
            ctx,
            "connection.create",
            connection_id,
            {"kind": kind, "secret_fields": sorted(values)},
        )
        await session.refresh(connection)
        return connection_out(connection)

    async def list(
        self, session: AsyncSession, principal: Principal, *, limit: int | None, cursor: str | None
    ) -> ConnectionPage:
        repo = ConnectionRepository(session, principal.tenant_id)
        try:
            items, next_cursor = await repo.page(repo.select(), limit=limit, cursor=cursor)
        except InvalidCursor:
            raise ValidationFailed("cursor is malformed") from None
        return ConnectionPage(items=[connection_out(c) for c in items], next_cursor=next_cursor)

    async def load(self, session: AsyncSession, tenant_id: uuid.UUID, connection_id: uuid.UUID) -> Connection:
        connection = await ConnectionRepository(session, tenant_id).get(connection_id)
        if connection is None:
            raise NotFound()
        return connection

    async def fetch(self, tenant_id: uuid.UUID, connection_id: uuid.UUID) -> Connection:
        """The record, read in a transaction of its own that is over before any remote call starts."""
        async with self.db.tenant(tenant_id) as session:
            return await self.load(session, tenant_id, connection_id)

    async def get(
        self, session: AsyncSession, principal: Principal, connection_id: uuid.UUID
    ) -> ConnectionOut:
        return connection_out(await self.load(session, principal.tenant_id, connection_id))

    async def update(
        self,
        session: AsyncSession,
        principal: Principal,
        connection_id: uuid.UUID,
        patch: ConnectionPatch,
        ctx: AuditContext,
    ) -> ConnectionOut:
        connection = await self.load(session, principal.tenant_id, connection_id)
        details: dict[str, Any] = {}
        if not isinstance(patch.name, msgspec.UnsetType) and patch.name != connection.name:
            connection.name = _name(patch.name)
            details["name"] = True
        if not isinstance(patch.config, msgspec.UnsetType):
            config = _decode(decode_config, connection.kind, patch.config, "config")
            await self._check_endpoints(principal.tenant_id, config)
            new = config_dict(config)
            changed = sorted(
                k for k in set(new) | set(connection.config) if new.get(k) != connection.config.get(k)
            )
            connection.config = new
            details["config_fields"] = changed
        if not isinstance(patch.secrets, msgspec.UnsetType):
            secrets = _decode(decode_secrets, connection.kind, patch.secrets, "secrets")
            values = secret_values(secrets)
            old = self._open_values(connection, tolerate_unreadable=True)
            changed = sorted(k for k in set(values) | set(old) if values.get(k) != old.get(k))
            connection.secrets = self._seal(principal.tenant_id, connection.id, values)
            connection.secrets_updated_at = datetime.now(UTC)
            connection.token_expires_at = None
            details["secret_fields"] = changed
            del old, values
        try:
            async with session.begin_nested():
                await session.flush()
        except IntegrityError:
            raise Conflict("a connection with this name exists") from None
        await self._record(session, principal, ctx, "connection.update", connection.id, details)
        await session.refresh(connection)
        return connection_out(connection)

    async def delete(
        self, session: AsyncSession, principal: Principal, connection_id: uuid.UUID, ctx: AuditContext
    ) -> None:
        kind = await ConnectionRepository(session, principal.tenant_id).remove(connection_id)
        if kind is None:
            raise NotFound()
        await self._record(session, principal, ctx, "connection.delete", connection_id, {"kind": kind})

    async def test(self, principal: Principal, connection_id: uuid.UUID, ctx: AuditContext) -> ConnectionTest:
        async with self.remote.slot(principal.tenant_id):
            connection = await self.fetch(principal.tenant_id, connection_id)
            try:
                opened = await self.opening(connection)
            except SecretsUnreadable as exc:
                result = ConnectionTest(ok=False, detail=exc.detail)
            else:
                try:
                    async with self.remote.deadline():
                        result = ConnectionTest(ok=True, detail=await opened.connector.test())
                except ConnectorError as exc:
                    result = ConnectionTest(ok=False, detail=exc.detail)
                finally:
                    await opened.aclose()
        await self._record_alone(
            principal,
            ctx,
            "connection.access",
            connection_id,
            {"op": "test", "ok": result.ok},
            outcome="success" if result.ok else "failure",
        )
        return result

    # --- opening -------------------------------------------------------------------------------------
    def open(self, connection: Connection) -> Opened:
        """The connector of `connection`, its secrets opened for this one use."""
        config = decode_config(connection.kind, connection.config)
        secrets = decode_secrets(connection.kind, self._open_values(connection))
        root = ObjectRoot.of(connection.tenant_id, base_of(connection.kind, config))
        return Opened(connection, open_connector(config, secrets, self.endpoints, root), root)

    async def opening(self, connection: Connection) -> Opened:
        """`open` on a worker thread (the tenant's own, inside its slot), within the call's deadline: building
        an SDK client costs about 0.1 s of CPU (boto3 loads its service model for every new session), which
        must not stall the event loop every tenant's requests share."""
        async with self.remote.deadline():
            return await asyncio.to_thread(self.open, connection)

    async def open_by_id(self, tenant_id: uuid.UUID, connection_id: uuid.UUID) -> Opened:
        """The connection opened for remote calls; its record is read (and the transaction over) first."""
        return await self.opening(await self.fetch(tenant_id, connection_id))

    def _open_values(self, connection: Connection, *, tolerate_unreadable: bool = False) -> dict[str, str]:
        values: dict[str, str] = {}
        for field, sealed in connection.secrets.items():
            try:
                values[field] = self.credentials.open(
                    str(sealed), secret_binding(connection.tenant_id, connection.id, field)
                ).decode()
            except CredentialError:
                if tolerate_unreadable:
                    continue
                log.error("connection.secret_unreadable", connection_id=str(connection.id), field=field)
                raise SecretsUnreadable(
                    "a stored secret of this connection does not open with the current key ring; set it again"
                ) from None
        return values

    def replace_secret(self, connection: Connection, field: str, value: str) -> None:
        """Seal a new value for one field (a refreshed token); the caller's transaction stores it."""
        sealed = self._seal(connection.tenant_id, connection.id, {field: value})
        connection.secrets = {**connection.secrets, **sealed}
        connection.secrets_updated_at = datetime.now(UTC)

    def _seal(self, tenant_id: uuid.UUID, connection_id: uuid.UUID, values: dict[str, str]) -> dict[str, Any]:
        return {
            field: self.credentials.seal(value.encode(), secret_binding(tenant_id, connection_id, field))
            for field, value in values.items()
        }

    async def _check_endpoints(self, tenant_id: uuid.UUID, config: Config) -> None:
        url = config.endpoint_url if isinstance(config, S3Config) else None
        if isinstance(config, AzureBlobConfig):
            url = config.account_url
        if url:
            # The tenant's DNS answers on the tenant's own threads, like any call to its services.
            async with self.remote.slot(tenant_id):
                await check_endpoint_soon(url, allow_private=self.endpoints.allow_private)

    # --- brokered access -----------------------------------------------------------------------------
    async def list_objects(
        self,
        principal: Principal,
        connection_id: uuid.UUID,
        *,
        prefix: str,
        limit: int | None,
        cursor: str | None,
        ctx: AuditContext,
    ) -> ObjectPage:
        async with self.remote.slot(principal.tenant_id):
            connection = await self.fetch(principal.tenant_id, connection_id)
            inner = self._unwrap_cursor(connection, prefix, cursor) if cursor else None
            opened = await self.opening(connection)
            try:
                full_prefix = opened.root.listing_prefix(prefix)
                async with self.remote.deadline():
                    page = await opened.storage().list(full_prefix, cursor=inner, limit=_limit(limit))
            finally:
                await opened.aclose()
        items = []
        for item in page.items:
            relative = opened.root.relative(item.key)
            if relative is not None:
                items.append(ObjectOut(key=relative, size=item.size, modified_at=item.modified_at))
        await self._access(principal, ctx, connection_id, "list", prefix)
        next_cursor = self._wrap_cursor(connection, prefix, page.cursor) if page.cursor else None
        return ObjectPage(items=items, next_cursor=next_cursor)

    async def open_object(
        self, principal: Principal, connection_id: uuid.UUID, key: str, ctx: AuditContext
    ) -> tuple[ObjectInfo, Download]:
        """The object's info and its bytes, streamed with a deadline between two chunks; the tenant's slot
        and the connector stay open until the stream is closed."""
        slot = self.remote.acquire(principal.tenant_id)
        opened: Opened | None = None
        try:
            with slot.on_own_threads():
                opened = await self.open_by_id(principal.tenant_id, connection_id)
                full = opened.root.key(key)
                storage = opened.storage()
                async with self.remote.deadline():
                    info = await storage.stat(full)
            await self._access(principal, ctx, connection_id, "get", key)
        except BaseException:
            try:
                if opened is not None:
                    await opened.aclose()
            finally:
                slot.release()
            raise
        return info, self.remote.download(storage.get(full), slot=slot, close=opened.aclose)

    async def delete_object(
        self, principal: Principal, connection_id: uuid.UUID, key: str, ctx: AuditContext
    ) -> None:
        async with self.remote.slot(principal.tenant_id):
            opened = await self.open_by_id(principal.tenant_id, connection_id)
            try:
                full = opened.root.key(key)
                storage = opened.storage()
                async with self.remote.deadline():
                    await storage.stat(full)  # absent: 404, as a missing connection would be
                    await storage.delete(full)
            finally:
                await opened.aclose()
        await self._access(principal, ctx, connection_id, "delete", key)

    # --- cursors -------------------------------------------------------------------------------------
    def _wrap_cursor(self, connection: Connection, prefix: str, cursor: str) -> str:
        plain = msgspec.json.encode({"p": prefix, "c": cursor})
        sealed = self.credentials.seal(plain, secret_binding(connection.tenant_id, connection.id, "cursor"))
        return base64.urlsafe_b64encode(sealed.encode()).decode().rstrip("=")

    def _unwrap_cursor(self, connection: Connection, prefix: str, cursor: str) -> str:
        try:
            sealed = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
            plain = self.credentials.open(
                sealed, secret_binding(connection.tenant_id, connection.id, "cursor")
            )
            data = msgspec.json.decode(plain)
        except (ValueError, CredentialError, msgspec.DecodeError):
            raise ValidationFailed("cursor is malformed") from None
        if not isinstance(data, dict) or data.get("p") != prefix or not isinstance(data.get("c"), str):
            raise ValidationFailed("cursor does not belong to this listing")
        return str(data["c"])

    # --- audit ---------------------------------------------------------------------------------------
    async def _access(
        self, principal: Principal, ctx: AuditContext, connection_id: uuid.UUID, op: str, key: str
    ) -> None:
        await self._record_alone(
            principal, ctx, "connection.access", connection_id, {"op": op, "key": key[:512]}
        )

    async def _record_alone(
        self,
        principal: Principal,
        ctx: AuditContext,
        action: str,
        connection_id: uuid.UUID,
        details: dict[str, Any],
        *,
        outcome: Literal["success", "failure", "denied"] = "success",
    ) -> None:
        """An audit event in a short transaction of its own, after the remote call is over."""
        async with self.db.tenant(principal.tenant_id) as session:
            await self._record(session, principal, ctx, action, connection_id, details, outcome=outcome)

    async def _record(
        self,
        session: AsyncSession,
        principal: Principal,
        ctx: AuditContext,
        action: str,
        connection_id: uuid.UUID,
        details: dict[str, Any],
        *,
        outcome: Literal["success", "failure", "denied"] = "success",
    ) -> None:
        await self.audit.record(
            session,
            principal.tenant_id,
            ctx,
            action=action,
            outcome=outcome,
            actor=principal.actor,
            target=Target("connection", str(connection_id)),
            details=details,
        )


def _kind_of(spec: ConnectionSpec) -> str:
    kind = spec.__struct_config__.tag
    if not isinstance(kind, str) or kind not in KINDS:  # pragma: no cover - the union decides
        raise ValidationFailed("unknown kind")
    return kind


def _name(name: str) -> str:
    try:
        return check_name(name)
    except ValueError as exc:
        raise ValidationFailed(str(exc)) from None


def _decode(decoder: Any, kind: str, raw: Any, what: str) -> Any:
    try:
        return decoder(kind, raw)
    except msgspec.ValidationError as exc:
        raise ValidationFailed(f"{what}: {exc}") from None


def _limit(limit: int | None) -> int:
    return max(1, min(limit or DEFAULT_PAGE, MAX_PAGE))
