"""The `azure_blob` connector: a container in an Azure Storage account, through azure-storage-blob (async).

One `ContainerClient` per connector (it keeps an aiohttp session), on a `connectors.outbound` transport:
the account URL's name is resolved and checked against the address rule at each connection, and a
redirect is refused, never followed (azure-core's redirect policy would fetch any Location and hand the
answer back as the blob). Credentials, exactly one of: the account key (shared key,
`AzureNamedKeyCredential`), a SAS token (`AzureSasCredential`), or a service principal
(`azure.identity.aio.ClientSecretCredential` against the operator's login URL, on an outbound transport
too).

Uploads are streamed: a stream shorter than one block is a single Put Blob (`upload_blob`); a longer one
is staged block by block (`stage_block`, one block sent while the next one fills, so at most two blocks
are in memory) and committed with `commit_block_list`. Block ids are the put's own random tag plus the
block's index: all the same length (Azure requires it), and two concurrent puts to one name never mix
their blocks. Azure has no "abort": a failed put leaves uncommitted blocks, which Azure drops after a
week or on the next commit; when the blob did not exist before, the put also removes the invisible blob
that holds them (an empty commit on condition that no blob exists, then a delete of exactly that one).

Errors are translated here into `connectors.base` errors with fixed sentences: the SDK's messages can
quote a request URL with its SAS signature, so none is ever copied into a detail.
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import contextlib
import ipaddress
import re
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from azure.core.credentials import AzureNamedKeyCredential, AzureSasCredential
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.identity.aio import ClientSecretCredential
from azure.storage.blob import BlobBlock, ContentSettings
from azure.storage.blob.aio import ContainerClient

from connectors.base import (
    AuthFailed,
    ConnectorError,
    ObjectInfo,
    ObjectNotFound,
    ObjectPage,
    Rejected,
    Throttled,
    Unavailable,
)
from connectors.schemas import AzureBlobConfig, AzureBlobSecrets

if TYPE_CHECKING:
    from connectors.factory import Endpoints

MIB = 1024 * 1024
BLOCK = 8 * MIB  # below this a single Put Blob; the staged block size otherwise
MAX_BLOCKS = 50_000  # Azure's limit per blob; very large blobs get bigger blocks
GET_CHUNK = 4 * MIB  # the size of each ranged GET of a download (and so of each chunk yielded)
MAX_RESULTS = 5000  # Azure answers at most 5000 blobs per List Blobs page

_SAFE_CODE = re.compile(r"\A[A-Za-z][A-Za-z0-9]{0,63}\Z")
_MISSING_CONTAINER = frozenset({"ContainerNotFound", "ContainerBeingDeleted"})
_AUTH_CODES = frozenset(
    {
        "AuthenticationFailed",
        "AuthorizationFailure",
        "AuthorizationPermissionMismatch",
        "AuthorizationResourceTypeMismatch",
        "AuthorizationSourceIPMismatch",
        "AuthorizationProtocolMismatch",
        "AuthorizationServiceMismatch",
        "InsufficientAccountPermissions",
        "AccountIsDisabled",
        "InvalidAuthenticationInfo",
        "NoAuthenticationInformation",
    }
)
_THROTTLE_CODES = frozenset({"ServerBusy", "OperationTimedOut"})


def block_size_for(size: int) -> int:
    """`BLOCK`, or more (whole MiB) when the blob would otherwise need more than Azure's 50,000 blocks."""
    if size <= BLOCK * MAX_BLOCKS:
        return BLOCK
    needed = -(-size // (MAX_BLOCKS - 500))  # headroom for a stream longer than announced
    return -(-needed // MIB) * MIB


def _error_code(exc: BaseException) -> str:
    code = getattr(exc, "error_code", None)
    code = getattr(code, "value", code)
    return str(code) if code else ""


def map_error(exc: BaseException, *, missing: str = "object") -> ConnectorError:
    """The safe connector error for an azure-core/azure-storage failure. `missing` says what a 404
    without a telling code means: "object" (ObjectNotFound) or "container" (Rejected)."""
    if isinstance(exc, ConnectorError):
        return exc
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return Unavailable("the storage service could not be reached")
    if isinstance(exc, AzureError):
        code = _error_code(exc)
        response = getattr(exc, "response", None)
        status = int(getattr(exc, "status_code", None) or getattr(response, "status_code", 0) or 0)
        if code in _MISSING_CONTAINER:
            return Rejected("the container does not exist")
        if isinstance(exc, ClientAuthenticationError) or code in _AUTH_CODES or status in (401, 403):
            return AuthFailed("the storage service refused the credentials or their rights")
        if code in _THROTTLE_CODES or status in (429, 503):
            return Throttled("the storage service is throttling requests; try again later")
        if isinstance(exc, ResourceNotFoundError) or status == 404:
            if missing == "container":
                return Rejected("the container does not exist")
            return ObjectNotFound("no such object")
        if status >= 500:
            return Unavailable("the storage service answered with a server error")
        if 300 <= status < 400:
            return Rejected("the storage service answered with a redirect, which is not followed")
        if isinstance(exc, HttpResponseError) and status:
            if _SAFE_CODE.match(code):
                return Rejected(f"the storage service refused the request ({code})")
            return Rejected("the storage service refused the request")
        return Unavailable("the storage service could not be used")
    if isinstance(exc, OSError | asyncio.TimeoutError):
        return Unavailable("the storage service could not be reached")
    raise exc  # a programming error: let it surface as it is


def account_name_of(account_url: str) -> str:
    """`https://<account>.blob.core.windows.net` → account; `http://127.0.0.1:10000/<account>` (Azurite,
    an IP or localhost endpoint) → the first path segment."""
    parts = urlsplit(account_url)
    host = parts.hostname or ""
    try:
        ipaddress.ip_address(host)
        is_ip = True
    except ValueError:
        is_ip = False
    if is_ip or host == "localhost" or "." not in host:
        return parts.path.strip("/").split("/", 1)[0]
    return host.split(".", 1)[0]


class AzureBlobConnector:
    def __init__(
        self,
        config: AzureBlobConfig,
        secrets: AzureBlobSecrets,
        endpoints: Endpoints,
        *,
        retry_total: int = 3,
    ) -> None:
        self.container = config.container
        credential: Any
        self._credential: ClientSecretCredential | None = None
        if secrets.account_key is not None:
            credential = AzureNamedKeyCredential(account_name_of(config.account_url), secrets.account_key)
        elif secrets.sas_token is not None:
            credential = AzureSasCredential(secrets.sas_token.lstrip("?"))
        else:
            if not (secrets.tenant_id and secrets.client_id and secrets.client_secret):
                raise Rejected("a service principal needs tenant_id, client_id and client_secret")
            try:
                self._credential = ClientSecretCredential(
                    secrets.tenant_id,
                    secrets.client_id,
                    secrets.client_secret,
                    authority=endpoints.login_url,
                    transport=endpoints.operator_outbound().azure_transport(
                        verify=endpoints.ca_bundle or True
                    ),
                )
            except ValueError:  # e.g. a login URL that is not https
                raise Rejected("the service principal cannot be used with this login endpoint") from None
            credential = self._credential
        options: dict[str, Any] = {
            "max_single_put_size": BLOCK,
            "max_block_size": BLOCK,
            "max_single_get_size": GET_CHUNK,
            "max_chunk_get_size": GET_CHUNK,
            "connection_timeout": 10,
            "read_timeout": 60,
            # The SDK's default waits 15 s, then 18 s, then 24 s between attempts.
            "retry_total": retry_total,
            "initial_backoff": 1,
            "increment_base": 2,
        }
        if endpoints.azure_api_version:
            options["api_version"] = endpoints.azure_api_version
        self._client = ContainerClient(
            config.account_url,
            config.container,
            credential=credential,
            transport=endpoints.tenant_outbound().azure_transport(),
            permit_redirects=False,
            **options,
        )

    def __repr__(self) -> str:
        return f"AzureBlobConnector(container={self.container!r})"

    # --- put ------------------------------------------------------------------------------------------
    async def put(
        self, key: str, chunks: AsyncIterator[bytes], *, size: int, content_type: str | None
    ) -> ObjectInfo:
        settings = ContentSettings(content_type=content_type) if content_type else None
        blob = self._client.get_blob_client(key)
        block_size = block_size_for(size)
        tag = uuid.uuid4().hex[:16]
        block_ids: builtins.list[str] = []
        in_flight: asyncio.Task[None] | None = None
        buffer = bytearray()
        written = 0

        async def stage(block_id: str, data: bytes) -> None:
            await blob.stage_block(block_id, data, length=len(data))

        async def send(data: bytes) -> None:
            nonlocal in_flight
            if in_flight is not None:
                await in_flight
            block_id = base64.b64encode(f"{tag}-{len(block_ids):06d}".encode()).decode()
            block_ids.append(block_id)
            in_flight = asyncio.create_task(stage(block_id, data))

        try:
            try:
                async for chunk in chunks:
                    written += len(chunk)
                    if written > size:
                        raise Rejected("the stream did not have the announced size")
                    buffer += chunk
                    while len(buffer) >= block_size:
                        with memoryview(buffer) as view:  # one copy, not two
                            block = bytes(view[:block_size])
                        del buffer[:block_size]
                        await send(block)
                if written != size:
                    raise Rejected("the stream did not have the announced size")
                if not block_ids:
                    await blob.upload_blob(
                        bytes(buffer), overwrite=True, length=len(buffer), content_settings=settings
                    )
                else:
                    if buffer:
                        await send(bytes(buffer))
                        buffer.clear()
                    if in_flight is not None:
                        await in_flight
                    await blob.commit_block_list(
                        [BlobBlock(block_id=b) for b in block_ids], content_settings=settings
                    )
            except BaseException:
                if in_flight is not None and not in_flight.done():
                    in_flight.cancel()
                if block_ids:
                    cleanup = asyncio.ensure_future(self._drop_uncommitted(key, in_flight))
                    with contextlib.suppress(BaseException):
                        await asyncio.shield(cleanup)
                raise
        except AzureError as exc:
            raise map_error(exc) from None
        return ObjectInfo(key, written)

    async def _drop_uncommitted(self, key: str, in_flight: asyncio.Task[None] | None) -> None:
        """Remove the invisible blob holding a failed put's blocks, only if no committed blob exists."""
        if in_flight is not None:
            with contextlib.suppress(BaseException):
                await in_flight
        blob = self._client.get_blob_client(key)
        with contextlib.suppress(AzureError):
            empty = await blob.commit_block_list([], if_none_match="*")
            await blob.delete_blob(if_match=empty["etag"])

    # --- read -----------------------------------------------------------------------------------------
    async def get(self, key: str) -> AsyncIterator[bytes]:
        try:
            downloader = await self._client.get_blob_client(key).download_blob(max_concurrency=1)
            async for chunk in downloader.chunks():
                yield chunk
        except AzureError as exc:
            raise map_error(exc) from None

    async def stat(self, key: str) -> ObjectInfo:
        try:
            props = await self._client.get_blob_client(key).get_blob_properties()
        except AzureError as exc:
            raise map_error(exc) from None
        return ObjectInfo(key, int(props.size), props.last_modified)

    async def list(self, prefix: str, *, cursor: str | None, limit: int) -> ObjectPage:
        try:
            pages = self._client.list_blobs(
                name_starts_with=prefix or None, results_per_page=max(1, min(limit, MAX_RESULTS))
            ).by_page(continuation_token=cursor or None)
            items: builtins.list[ObjectInfo] = []
            try:
                page = await pages.__anext__()
            except StopAsyncIteration:
                return ObjectPage(items, None)
            async for blob in page:
                items.append(ObjectInfo(blob.name, int(blob.size), blob.last_modified))
        except AzureError as exc:
            raise map_error(exc, missing="container") from None
        next_cursor: str | None = getattr(pages, "continuation_token", None)
        return ObjectPage(items, next_cursor or None)

    async def delete(self, key: str) -> None:
        try:
            await self._client.get_blob_client(key).delete_blob(delete_snapshots="include")
        except AzureError as exc:
            error = map_error(exc)
            if not isinstance(error, ObjectNotFound):
                raise error from None

    async def test(self) -> str:
        try:
            await self._client.get_container_properties()
        except AzureError as exc:
            raise map_error(exc, missing="container") from None
        return "the container is reachable with these credentials"

    async def aclose(self) -> None:
        with contextlib.suppress(Exception):
            await self._client.close()
        if self._credential is not None:
            with contextlib.suppress(Exception):
                await self._credential.close()
