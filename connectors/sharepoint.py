"""The `sharepoint` connector: one SharePoint document library, through Microsoft Graph.

Keys are paths under the drive's root (`/drives/{drive-id}/root:/{key}`); the connection's `folder` is
already part of the full key (`connectors.paths.ObjectRoot`), so it is not added here again. The site is
resolved by URL (`/sites/{hostname}:/{path}`), the drive by name among the site's drives (the site's
default drive when no name is configured), once per connector.

The Graph client is office365-rest-python-client's `GraphClient`, pointed at `endpoints.graph_url`
by the smallest override the library allows: its request class derives the service root from a fixed
table of Azure clouds, so `_GraphRequest` overrides `service_root_url`. App-only tokens come from an
msal `ConfidentialClientApplication` that this module builds itself (the library's `with_client_secret`
/ `with_certificate` cannot take an authority host outside Microsoft's list, a CA bundle or
`instance_discovery=False`) and hands to `GraphClient(token_callback=...)`.

- put: below 4 MiB one `PUT .../content`; from 4 MiB an upload session, fed 5 MiB fragments (a
  multiple of 320 KiB, as Graph requires) as the chunks arrive; a failed put cancels its session, so no
  item is left behind (Graph creates the item only when the last byte arrives).
- list: the files directly inside the prefix's folder (no recursion: a SharePoint folder is listed one
  level at a time, and a recursive walk would need a tree cursor), whose name starts with the rest of
  the prefix, in name order; the cursor is Graph's own continuation (the query string of
  `@odata.nextLink`, never the URL, so a cursor cannot send the token elsewhere) plus how many
  children of that page were already consumed.
- delete: only a file is deleted (by id, after a lookup): a key that names a folder is "absent".
- HTTP: msal and the Graph client each get a `connectors.outbound` requests session (the operator's
  login and Graph URLs: any address, but no redirect is ever followed). The one redirect Graph's protocol
  has, `GET .../content` → 302 to a pre-authenticated download URL, is taken here by hand: once, without
  the bearer token, through the same session (which refuses any further redirect).
- errors: translated at this module's edge into `connectors.base` errors with fixed sentences; the
  SDK's message, tokens, secrets, certificates and upload or download URLs never reach a detail.
- throttling: a 429 (or 503 with Retry-After) is retried here, up to twice, when the service asks for at
  most `max_retry_wait` seconds; otherwise it becomes `Throttled(retry_after=...)`. The library's own
  auto-retry is left off: it would sleep in a worker thread for as long as the service says.
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import contextlib
import json
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from urllib.parse import quote, urljoin, urlsplit

import requests
from office365.graph_client import GraphClient
from office365.graph_request import GraphRequest
from office365.onedrive.driveitems.driveItem import DriveItem
from office365.runtime.client_request_exception import ClientRequestException
from office365.runtime.http.http_method import HttpMethod
from office365.runtime.http.request_options import RequestOptions
from office365.runtime.queries.read_entity import ReadEntityQuery
from office365.runtime.queries.upload_session import UploadSessionQuery

from connectors.base import (
    CHUNK,
    AuthFailed,
    ConnectorError,
    ObjectInfo,
    ObjectNotFound,
    ObjectPage,
    Rejected,
    Throttled,
    Unavailable,
)
from connectors.outbound import RedirectRefused
from connectors.schemas import SharePointConfig, SharePointSecrets

if TYPE_CHECKING:
    from connectors.factory import Endpoints

T = TypeVar("T")
Target = Literal["object", "site", "drive", "session"]

SIMPLE_UPLOAD_LIMIT = 4 * 1024 * 1024
FRAGMENT = 16 * 320 * 1024  # 5 MiB, a multiple of 320 KiB
_ITEM_FIELDS = "id,name,size,lastModifiedDateTime,file,folder"
_MAX_PAGES_PER_CALL = 10
_AUTH_ERRORS = {"invalid_client", "unauthorized_client", "invalid_grant", "invalid_request", "invalid_scope"}


class _TokenFailure(Exception):
    """Raised inside the token callback; carries only which safe error it becomes."""

    def __init__(self, error: ConnectorError) -> None:
        super().__init__(error.detail)
        self.error = error


class _GraphRequest(GraphRequest):
    def __init__(self, service_root: str) -> None:
        super().__init__()
        self._service_root = service_root

    @property
    def service_root_url(self) -> str:
        return self._service_root


class _GraphClient(GraphClient):
    """`GraphClient` whose requests go to `<graph_url>/v1.0` instead of the library's cloud table."""

    def __init__(self, service_root: str, token_callback: Callable[[], dict[str, str]]) -> None:
        super().__init__(token_callback=token_callback)
        self._service_root = service_root

    def pending_request(self) -> GraphRequest:
        if self._pending_request is None:
            request = _GraphRequest(self._service_root)
            request.with_access_token(self._token_callback)  # type: ignore[arg-type]
            self._pending_request = request
        return self._pending_request  # type: ignore[return-value]


class SharePointConnector:
    def __init__(
        self,
        config: SharePointConfig,
        secrets: SharePointSecrets,
        endpoints: Endpoints,
        *,
        ca_bundle: str | None = None,
        max_retry_wait: float = 5.0,
        retries: int = 2,
    ) -> None:
        self._config = config
        self._secrets = secrets
        self._login_url = endpoints.login_url.rstrip("/")
        self._graph_url = endpoints.graph_url.rstrip("/")
        self._root = f"{self._graph_url}/v1.0"
        self._outbound = endpoints.operator_outbound()
        # A CA bundle for a private login/Graph endpoint (tests); None keeps the system's trust store.
        self._verify: bool | str = ca_bundle or True
        self._max_retry_wait = max_retry_wait
        self._retries = retries
        self._lock = threading.Lock()  # the client's query queue is not thread-safe
        self._token_lock = threading.Lock()
        self._client: _GraphClient | None = None
        self._app: Any = None  # msal.ConfidentialClientApplication (msal is untyped)
        self._drive_id: str | None = None

    def __repr__(self) -> str:
        return f"SharePointConnector(site_url={self._config.site_url!r}, drive={self._config.drive!r})"

    # --- Connector -----------------------------------------------------------------------------------
    async def put(
        self, key: str, chunks: AsyncIterator[bytes], *, size: int, content_type: str | None
    ) -> ObjectInfo:
        await self._call(self._drive)
        if size < SIMPLE_UPLOAD_LIMIT:
            data = bytearray()
            async for chunk in chunks:
                data += chunk
                if len(data) > size:
                    raise Rejected("the content is longer than its declared size")
            if len(data) != size:
                raise Rejected("the content is shorter than its declared size")
            item = await self._call(partial(self._simple_put, key, bytes(data), content_type))
        else:
            item = await self._session_put(key, chunks, size)
        return _info(key, item)

    async def get(self, key: str) -> AsyncIterator[bytes]:
        response = await self._call(partial(self._open_content, key))
        try:
            pieces = response.iter_content(CHUNK)
            while (piece := await asyncio.to_thread(next, pieces, None)) is not None:
                if piece:
                    yield piece
        except requests.RequestException:
            raise Unavailable("the download from SharePoint was interrupted") from None
        finally:
            await asyncio.to_thread(response.close)

    async def stat(self, key: str) -> ObjectInfo:
        item = await self._call(partial(self._item, key))
        if "file" not in item:
            raise ObjectNotFound("no such object")
        return _info(key, item)

    async def list(self, prefix: str, *, cursor: str | None, limit: int) -> ObjectPage:
        folder, _, start = prefix.rpartition("/")
        query, skip, top = _decode_cursor(cursor) if cursor else (None, 0, max(1, min(limit, 999)))
        items: builtins.list[ObjectInfo] = []
        for _ in range(_MAX_PAGES_PER_CALL):
            try:
                page = await self._call(partial(self._children, folder, query, top))
            except ObjectNotFound:  # no such folder (or it went away while paging)
                return ObjectPage(items, None)
            children = page.get("value") or []
            next_link = page.get("@odata.nextLink")
            position = skip
            for child in children[skip:]:
                if len(items) == limit:
                    break
                position += 1
                name = child.get("name") if isinstance(child, dict) else None
                if isinstance(name, str) and "file" in child and name.startswith(start):
                    items.append(_info(f"{folder}/{name}" if folder else name, child))
            if position < len(children):  # the page has children left: resume inside it
                return ObjectPage(items, _encode_cursor(query, position, top))
            if not isinstance(next_link, str):
                return ObjectPage(items, None)
            query, skip = urlsplit(next_link).query, 0
            if len(items) == limit:
                return ObjectPage(items, _encode_cursor(query, 0, top))
        return ObjectPage(items, _encode_cursor(query, skip, top))

    async def delete(self, key: str) -> None:
        try:
            item = await self._call(partial(self._item, key))
        except ObjectNotFound:
            return
        if "file" in item and isinstance(item.get("id"), str):
            await self._call(partial(self._delete_item, item["id"]))

    async def test(self) -> str:
        await self._call(self._drive)
        return "the site and its document library answered"

    async def aclose(self) -> None:
        client, app = self._client, self._app
        self._client = self._app = None

        def close() -> None:
            if client is not None:
                client.pending_request().transport.close()
            if app is not None:
                app.http_client.close()

        await asyncio.to_thread(close)

    # --- the async edge: threads and throttling ------------------------------------------------------
    async def _call(self, fn: Callable[[], T]) -> T:
        attempt = 0
        while True:
            try:
                return await asyncio.to_thread(fn)
            except Throttled as exc:
                wait = exc.retry_after
                if attempt >= self._retries or wait is None or wait > self._max_retry_wait:
                    raise
                attempt += 1
                await asyncio.sleep(wait)

    async def _session_put(self, key: str, chunks: AsyncIterator[bytes], size: int) -> dict[str, Any]:
        upload_url = await self._call(partial(self._create_session, key))
        try:
            sent = 0
            buffer = bytearray()
            async for chunk in chunks:
                buffer += chunk
                if sent + len(buffer) > size:
                    raise Rejected("the content is longer than its declared size")
                # The last fragment waits for the end of the stream, so a longer stream cannot complete it.
                while len(buffer) >= FRAGMENT and sent + FRAGMENT < size:
                    fragment = bytes(buffer[:FRAGMENT])
                    del buffer[:FRAGMENT]
                    await self._call(partial(self._put_fragment, upload_url, fragment, sent, size))
                    sent += len(fragment)
            if sent + len(buffer) != size:
                raise Rejected("the content is shorter than its declared size")
            item = await self._call(partial(self._put_fragment, upload_url, bytes(buffer), sent, size))
            if item is None:
                raise Unavailable("SharePoint did not complete the upload")
            return item
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self._cancel_session, upload_url)
            raise

    # --- blocking parts (worker threads) -------------------------------------------------------------
    def _graph(self) -> _GraphClient:
        with self._lock:
            if self._client is None:
                client = _GraphClient(self._root, self._token)
                client.with_transport(
                    session=self._outbound.requests_session(verify=self._verify), timeout=(10, 300)
                )
                self._client = client
            return self._client

    def _token(self) -> dict[str, str]:
        """The library's token callback: an app-only token from msal (cached by msal until it expires)."""
        with self._token_lock:
            app = self._app or self._build_app()
            try:
                result = app.acquire_token_for_client(scopes=[f"{self._graph_url}/.default"])
            except (requests.RequestException, ValueError):
                raise _TokenFailure(Unavailable("the Microsoft login service could not be reached")) from None
        token = result.get("access_token") if isinstance(result, dict) else None
        if not isinstance(token, str):
            error = result.get("error") if isinstance(result, dict) else None
            if error in _AUTH_ERRORS or error is None:
                raise _TokenFailure(AuthFailed("the Microsoft login service refused the app credentials"))
            raise _TokenFailure(Unavailable("the Microsoft login service did not issue a token"))
        return {"access_token": token, "token_type": "Bearer"}

    def _build_app(self) -> Any:
        import msal  # type: ignore[import-untyped]

        credential: str | dict[str, Any]
        if self._secrets.client_secret is not None:
            credential = self._secrets.client_secret
        else:
            credential = _certificate_credential(
                self._secrets.certificate_pem or "", self._secrets.certificate_password
            )
        try:
            # Building the app discovers the tenant (one request to the authority); a local or sovereign
            # authority is not in msal's list, so instance discovery (at login.microsoftonline.com) is off.
            app = msal.ConfidentialClientApplication(
                self._secrets.client_id,
                authority=f"{self._login_url}/{quote(self._secrets.tenant_id, safe='')}",
                client_credential=credential,
                instance_discovery=False,
                http_client=self._outbound.requests_session(verify=self._verify),
            )
        except ValueError:
            raise _TokenFailure(AuthFailed("the Microsoft login service does not know this tenant")) from None
        except requests.RequestException:
            raise _TokenFailure(Unavailable("the Microsoft login service could not be reached")) from None
        self._app = app
        return app

    def _drive(self) -> str:
        if self._drive_id is not None:
            return self._drive_id
        client = self._graph()
        with _translated("site"):
            # A token first, outside the library's request hook (which logs a listener's failure as an
            # error with its traceback): msal caches it, so the hook's own call is then a cache hit.
            self._token()
        parts = urlsplit(self._config.site_url)
        path = parts.path.rstrip("/")
        host = parts.hostname or ""
        with self._lock, _translated("site"):
            if path:  # GET /sites/{hostname}:/{server-relative path}
                site = client.sites.get_by_url(f"https://{host}{quote(path)}")
            else:  # the tenant's root site: GET /sites/{hostname}
                site = client.sites[host]
                client.add_query(ReadEntityQuery(site))
            client.execute_query()
            site_id = site.id
        if not site_id:
            raise Unavailable("SharePoint answered in an unexpected way")
        with self._lock, _translated("drive"):
            if self._config.drive is None:
                drive = client.sites[site_id].drive
                client.add_query(ReadEntityQuery(drive))
                client.execute_query()
                drive_id = drive.id
            else:
                drives = client.sites[site_id].drives.get()
                client.execute_query()
                wanted = self._config.drive.casefold()
                drive_id = next((d.id for d in drives if (d.name or "").casefold() == wanted), None)
        if not drive_id:
            raise Rejected("the document library was not found on the site")
        self._drive_id = drive_id
        return drive_id

    def _item(self, key: str) -> dict[str, Any]:
        drive_id = self._drive()
        client = self._graph()
        with self._lock, _translated("object"):
            item = client.drives[drive_id].root.get_by_path(_path(key))
            client.add_query(ReadEntityQuery(item))
            client.execute_query()
            return _properties(item)

    def _delete_item(self, item_id: str) -> None:
        drive_id = self._drive()
        client = self._graph()
        with self._lock, _translated("object"):
            client.drives[drive_id].items[item_id].delete_object(ignore_missing=True)
            client.execute_query()

    def _simple_put(self, key: str, data: bytes, content_type: str | None) -> dict[str, Any]:
        url = f"{self._root}/drives/{self._drive()}/root:/{_path(key)}:/content"
        request = RequestOptions(url, method=HttpMethod.Put, data=data)
        request.set_header("Content-Type", content_type or "application/octet-stream")
        with _translated("object"):
            response = self._graph().pending_request().execute_request_direct(request)
            return _json_object(response)

    def _create_session(self, key: str) -> str:
        drive_id = self._drive()
        client = self._graph()
        with self._lock, _translated("object"):
            item = client.drives[drive_id].root.get_by_path(_path(key))
            query = UploadSessionQuery(  # type: ignore[no-untyped-call]
                item, {"item": {"@microsoft.graph.conflictBehavior": "replace"}}
            )
            client.add_query(query)
            client.execute_query()
            url = query.upload_session_url
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise Unavailable("SharePoint answered in an unexpected way")
        return url

    def _put_fragment(self, upload_url: str, data: bytes, start: int, total: int) -> dict[str, Any] | None:
        # The upload URL is pre-authenticated: Graph asks that no Authorization header be sent to it.
        request = RequestOptions(upload_url, method=HttpMethod.Put, data=data)
        request.set_header("Content-Length", len(data))
        request.set_header("Content-Range", f"bytes {start}-{start + len(data) - 1}/{total}")
        with _translated("session"):
            response = self._graph().pending_request().transport.execute(request)
            _raise_for_status(response)
            if response.status_code in (200, 201):
                return _json_object(response)
            return None

    def _cancel_session(self, upload_url: str) -> None:
        response = (
            self._graph()
            .pending_request()
            .transport.execute(RequestOptions(upload_url, method=HttpMethod.Delete))
        )
        response.close()

    def _open_content(self, key: str) -> requests.Response:
        url = f"{self._root}/drives/{self._drive()}/root:/{_path(key)}:/content"
        transport = self._graph().pending_request().transport
        with _translated("object"):
            # The token first, so that a redirect caught below can only be this request's answer.
            request = RequestOptions(url, stream=True)
            request.set_header("Authorization", f"Bearer {self._token()['access_token']}")
            try:
                response = transport.execute(request)
            except RedirectRefused as redirect:
                location = urljoin(url, redirect.location)
            else:
                _raise_for_status(response)
                return response
            if urlsplit(location).scheme not in ("https", "http"):
                raise Unavailable("SharePoint answered in an unexpected way")
            # Pre-authenticated: no Authorization header goes there (the transport adds none of its own).
            response = transport.execute(RequestOptions(location, stream=True))
            _raise_for_status(response)
            return response

    def _children(self, folder: str, query: str | None, top: int) -> dict[str, Any]:
        drive_id = self._drive()
        base = f"{self._root}/drives/{drive_id}/root"
        url = f"{base}:/{_path(folder)}:/children" if folder else f"{base}/children"
        url += "?" + (query if query is not None else f"$top={top}&$select={_ITEM_FIELDS}&$orderby=name")
        with _translated("object"):
            response = self._graph().pending_request().execute_request_direct(RequestOptions(url))
            return _json_object(response)


# --- helpers ----------------------------------------------------------------------------------------
def _path(key: str) -> str:
    return quote(key, safe="/")


def _properties(item: DriveItem) -> dict[str, Any]:
    return dict(item.properties)


def _json_object(response: requests.Response) -> dict[str, Any]:
    body = response.json()
    if not isinstance(body, dict):
        raise ValueError("not an object")
    return body


def _raise_for_status(response: requests.Response) -> None:
    if response.status_code >= 400:
        raise ClientRequestException.from_response(response)


def _info(key: str, item: dict[str, Any]) -> ObjectInfo:
    size = item.get("size")
    return ObjectInfo(key, size if isinstance(size, int) else 0, _when(item.get("lastModifiedDateTime")))


def _when(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value != datetime.min else None
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
    return None


def _encode_cursor(query: str | None, skip: int, top: int) -> str:
    """Where to resume: the page's query (None: the first page, of `top` children), children consumed."""
    raw = json.dumps({"q": query, "n": skip, "t": top}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[str | None, int, int]:
    malformed = Rejected("the listing cursor is malformed")
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except ValueError:
        raise malformed from None
    if not isinstance(data, dict):
        raise malformed
    query, skip, top = data.get("q"), data.get("n"), data.get("t")
    if not (query is None or isinstance(query, str)) or not isinstance(skip, int) or skip < 0:
        raise malformed
    if not isinstance(top, int) or not 1 <= top <= 999:
        raise malformed
    if query is not None and ("#" in query or any(ch.isspace() for ch in query)):
        raise malformed
    return query, skip, top


def _certificate_credential(pem: str, password: str | None) -> dict[str, Any]:
    """msal's certificate credential: the private key and the certificate's SHA-1 thumbprint (x5t)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    try:
        data = pem.encode()
        certificate = x509.load_pem_x509_certificates(data)[0]
        key = serialization.load_pem_private_key(data, password.encode() if password else None)
    except (ValueError, TypeError, IndexError):
        raise _TokenFailure(
            Rejected(
                "the certificate could not be read: give the PEM certificate, its private key and password"
            )
        ) from None
    public = certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if (
        key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        != public
    ):
        raise _TokenFailure(Rejected("the certificate and the private key do not belong together"))
    unencrypted = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return {"private_key": unencrypted, "thumbprint": certificate.fingerprint(hashes.SHA1()).hex()}  # noqa: S303


@contextlib.contextmanager
def _translated(target: Target) -> Iterator[None]:
    """SDK and HTTP failures as safe connector errors (never the SDK's message, which may hold URLs)."""
    try:
        yield
    except ConnectorError:
        raise
    except _TokenFailure as exc:
        raise exc.error from None
    except ClientRequestException as exc:
        raise _from_response(exc.response, target) from None
    except requests.RequestException:
        raise Unavailable("SharePoint could not be reached") from None
    except (ValueError, KeyError, TypeError, AttributeError):
        raise Unavailable("SharePoint answered in an unexpected way") from None


def _from_response(response: requests.Response | None, target: Target) -> ConnectorError:
    if response is None:
        return Unavailable("SharePoint could not be reached")
    status = response.status_code
    code = ""
    with contextlib.suppress(ValueError, AttributeError, TypeError):
        code = str(response.json()["error"]["code"])
    retry_after = _retry_after(response)
    if status in (401, 403):
        return AuthFailed("SharePoint refused the app's credentials or they lack the rights for this")
    if status == 429 or (status == 503 and retry_after is not None):
        return Throttled("SharePoint is throttling requests; try again later", retry_after=retry_after)
    if status == 404 or code.lower() == "itemnotfound":
        if target == "site":
            return Rejected("the SharePoint site was not found")
        if target == "drive":
            return Rejected("the document library was not found on the site")
        if target == "session":
            return Unavailable("the upload session expired")
        return ObjectNotFound("no such object")
    if status == 413:
        return Rejected("the file is too large for SharePoint")
    if status == 423:
        return Rejected("the file is locked in SharePoint")
    if status == 507:
        return Rejected("the SharePoint storage quota is exceeded")
    if status >= 500:
        return Unavailable("SharePoint answered with a server error")
    return Rejected("SharePoint refused the request")


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
