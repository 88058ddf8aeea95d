"""The `instagram` publisher: content publishing through the Instagram Graph API (Instagram Login).

Publishing is three steps (Meta, "Content Publishing"): POST /{version}/{ig-user-id}/media creates a
container from a URL that Instagram fetches itself (`image_url` for a JPEG, `video_url` with
`media_type=REELS` for a video); GET /{version}/{container-id}?fields=status_code,status is polled until the
container is FINISHED; POST /{version}/{ig-user-id}/media_publish with `creation_id` makes the post.

Secrets stay out of URLs and logs: the access token travels in the `Authorization: Bearer` header, and the
media URL (a signed URL to our own content) and the caption go in the form body, never in a query string.
The one exception is GET /refresh_access_token, whose only documented form takes the token as a query
parameter; that request is handed to the transport directly so httpx's request log line never prints it.
Graph error messages are never passed on: they can echo the media URL (9004 "could not be fetched from this
uri: ...") or parts of the request, so an error detail only ever names numeric codes and statuses.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import TYPE_CHECKING, Any

import httpx

from connectors.base import (
    AuthFailed,
    ConnectorError,
    Published,
    Rejected,
    Throttled,
    Unavailable,
)
from connectors.schemas import InstagramConfig, InstagramSecrets

if TYPE_CHECKING:
    from connectors.factory import Endpoints

# The upload's detected MIME type decides the container kind; Instagram takes JPEG only for images.
IMAGE_TYPES = frozenset({"image/jpeg"})
VIDEO_TYPES = frozenset({"video/mp4", "video/quicktime"})

# Graph error codes (Meta, "Graph API: Handling Errors", "Rate Limits", "Instagram Platform: Error Codes").
THROTTLE_CODES = frozenset({4, 17, 32, 613, 80002})  # 80002: Instagram business-use-case rate limit
TOKEN_CODES = frozenset({190, 102})
PERMISSION_CODES = frozenset({3, 10})  # and the 200-299 range
TRANSIENT_CODES = frozenset({1, 2, -1, -2})
NOT_READY = 9007  # "media is not ready for publishing": transient
DEFAULT_RETRY_AFTER = 60.0
_SAFE_USERNAME = re.compile(r"\A[A-Za-z0-9._]{1,30}\Z")
_SUBCODE_IN_STATUS = re.compile(r"\b(\d{4,8})\b")
_TOKEN_CHARS = re.compile(r"\A[\x21-\x7e]+\Z")


class InstagramPublisher:
    """One Instagram professional account. Build it per use and `aclose()` it."""

    def __init__(
        self,
        config: InstagramConfig,
        secrets: InstagramSecrets,
        endpoints: Endpoints,
        *,
        poll_interval: float = 2.0,
        max_poll_interval: float = 15.0,
        max_wait: float = 300.0,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._ig_user_id = config.ig_user_id
        self._version = config.graph_api_version
        self._token = secrets.access_token
        self._poll_interval = poll_interval
        self._max_poll_interval = max_poll_interval
        self._max_wait = max_wait
        # The operator's Graph URL: any address, but a redirect is refused (connectors.outbound).
        self._transport = transport or endpoints.operator_outbound().httpx_transport()
        self._client = httpx.AsyncClient(
            base_url=endpoints.instagram_url.rstrip("/"),
            transport=self._transport,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            follow_redirects=False,
            trust_env=False,
            headers={"Accept": "application/json", "User-Agent": "filegate-instagram"},
        )

    def __repr__(self) -> str:
        return f"InstagramPublisher(ig_user_id={self._ig_user_id!r}, version={self._version!r})"

    # --- the Publisher protocol -------------------------------------------------------------------------
    async def publish(self, *, media_url: str, media_type: str, caption: str | None) -> Published:
        kind = media_type.split(";", 1)[0].strip().lower()
        form: dict[str, str]
        if kind in IMAGE_TYPES:
            form = {"image_url": media_url}
        elif kind in VIDEO_TYPES:
            form = {"media_type": "REELS", "video_url": media_url}
        else:
            raise Rejected("Instagram accepts JPEG images and MP4/MOV videos")
        if caption:
            form["caption"] = caption
        created = await self._call("POST", f"/{self._version}/{self._ig_user_id}/media", data=form)
        container_id = _string_field(created, "id")
        await self._wait_until_finished(container_id)
        try:
            done = await self._call(
                "POST",
                f"/{self._version}/{self._ig_user_id}/media_publish",
                data={"creation_id": container_id},
            )
        except Unavailable:
            # The post may exist even though its answer was lost: a blind retry would post it twice.
            if await self._container_status(container_id) == "PUBLISHED":
                raise Rejected(
                    "Instagram published the media but its answer was lost; check the account before retrying"
                ) from None
            raise
        return Published(media_id=_string_field(done, "id"), container_id=container_id)

    async def test(self) -> str:
        body = await self._call(
            "GET", f"/{self._version}/{self._ig_user_id}", params={"fields": "id,username"}
        )
        username = body.get("username")
        if isinstance(username, str) and _SAFE_USERNAME.match(username):
            return f"connected to Instagram account @{username}"
        return "connected to the Instagram account"

    async def aclose(self) -> None:
        await self._client.aclose()

    # --- extras ---------------------------------------------------------------------------------------
    async def refresh_token(self) -> tuple[str, int]:
        """A fresh long-lived token and its lifetime in seconds; this publisher uses it from now on.

        The caller must store the new token (seal it into the connection's secrets): the old one may stop
        working at any time after a refresh.
        """
        self._check_token()
        request = self._client.build_request(
            "GET",
            "/refresh_access_token",
            params={"grant_type": "ig_refresh_token", "access_token": self._token},
        )
        try:
            response = await self._transport.handle_async_request(request)
            try:
                await response.aread()
            finally:
                await response.aclose()
        except httpx.TimeoutException:
            raise Unavailable("Instagram did not answer in time") from None
        except httpx.HTTPError:
            raise Unavailable("Instagram could not be reached") from None
        body = self._parse(response)
        token = body.get("access_token")
        expires_in = body.get("expires_in")
        if not isinstance(token, str) or not _TOKEN_CHARS.match(token) or not isinstance(expires_in, int):
            raise Unavailable("Instagram answered the token refresh with an unexpected body")
        self._token = token
        return token, expires_in

    async def publishing_limit(self) -> tuple[int, int]:
        """(posts published in the last 24 hours, posts allowed in 24 hours)."""
        body = await self._call(
            "GET",
            f"/{self._version}/{self._ig_user_id}/content_publishing_limit",
            params={"fields": "quota_usage,config"},
        )
        data = body.get("data")
        if isinstance(data, list) and data and isinstance(data[0], dict):
            usage = data[0].get("quota_usage")
            config = data[0].get("config")
            total = config.get("quota_total") if isinstance(config, dict) else None
            if isinstance(usage, int) and isinstance(total, int):
                return usage, total
        raise Unavailable("Instagram answered the publishing limit with an unexpected body")

    # --- internals ------------------------------------------------------------------------------------
    async def _wait_until_finished(self, container_id: str) -> None:
        deadline = time.monotonic() + self._max_wait
        interval = self._poll_interval
        while True:
            status = await self._container_status(container_id, with_detail=True)
            code, _, subcode = status.partition(" ")
            match code:
                case "FINISHED":
                    return
                case "ERROR" | "EXPIRED":
                    suffix = f", subcode {subcode}" if subcode else ""
                    raise Rejected(f"Instagram could not process the media (status {code}{suffix})")
                case "PUBLISHED":
                    raise Rejected("the Instagram container was already published")
            # IN_PROGRESS, or a status this code does not know yet: keep waiting until the deadline.
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Unavailable(
                    f"Instagram did not finish processing the media within {self._max_wait:g} seconds"
                )
            await asyncio.sleep(min(interval, remaining))
            interval = min(interval * 1.5, self._max_poll_interval)

    async def _container_status(self, container_id: str, *, with_detail: bool = False) -> str:
        """`status_code`, followed by the error subcode (digits only) when asked and there is one."""
        body = await self._call(
            "GET", f"/{self._version}/{container_id}", params={"fields": "status_code,status"}
        )
        code = body.get("status_code")
        if not isinstance(code, str) or not re.fullmatch(r"[A-Za-z_]{1,32}", code):
            raise Unavailable("Instagram answered the container status with an unexpected body")
        code = code.upper()
        status = body.get("status")
        if with_detail and isinstance(status, str) and (found := _SUBCODE_IN_STATUS.search(status)):
            return f"{code} {found.group(1)}"
        return code

    def _check_token(self) -> None:
        # A token with control characters or spaces cannot be a header value, and httpx's error for it
        # would quote the value.
        if not _TOKEN_CHARS.match(self._token):
            raise AuthFailed("the Instagram access token is malformed")

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        data: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        if not _safe_path_segment(path):
            raise Rejected("the Instagram id is not valid")
        self._check_token()
        try:
            response = await self._client.request(
                method,
                path,
                params=params,
                data=data,
                headers={"Authorization": f"Bearer {self._token}"},
            )
        except httpx.TimeoutException:
            raise Unavailable("Instagram did not answer in time") from None
        except httpx.HTTPError:
            raise Unavailable("Instagram could not be reached") from None
        return self._parse(response)

    def _parse(self, response: httpx.Response) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.is_success and isinstance(body, dict) and "error" not in body:
            return body
        raise graph_error(response.status_code, body, response.headers)


def graph_error(status: int, body: Any, headers: httpx.Headers) -> ConnectorError:
    """The safe error for a Graph error answer: numeric codes only, never the message."""
    error = body.get("error") if isinstance(body, dict) else None
    code = subcode = None
    kind = None
    if isinstance(error, dict):
        code = _int(error.get("code"))
        subcode = _int(error.get("error_subcode"))
        kind = error.get("type") if isinstance(error.get("type"), str) else None
    if code is None:
        label = f"HTTP {status}"
    else:
        label = f"code {code}" if subcode is None else f"code {code}/{subcode}"

    if code in THROTTLE_CODES or (code is None and status == 429):
        return Throttled(
            f"Instagram is rate limiting this account ({label})", retry_after=retry_after(headers)
        )
    if code in TOKEN_CODES:
        return AuthFailed("the Instagram access token is invalid or expired")
    if code in PERMISSION_CODES or (code is not None and 200 <= code <= 299):
        return AuthFailed("the token lacks a permission")
    if code in TRANSIENT_CODES or code == NOT_READY:
        return Unavailable(f"Instagram had a temporary failure ({label})")
    if code is not None and status < 500:
        # Graph types many plain parameter errors (100, 9004, 2207xxx) as OAuthException too, so the type
        # alone only means a token problem when no better code is given or the status says so.
        if kind == "OAuthException" and status == 401:
            return AuthFailed("the Instagram access token is invalid or expired")
        return Rejected(f"Instagram refused the request ({label})")
    if status >= 500:
        return Unavailable(f"Instagram answered with a server error ({label})")
    if status == 401 or kind == "OAuthException":
        return AuthFailed("the Instagram access token is invalid or expired")
    if status == 403:
        return AuthFailed("the token lacks a permission")
    if status < 400:
        return Unavailable(f"Instagram answered with an unexpected body ({label})")
    return Rejected(f"Instagram refused the request ({label})")


def retry_after(headers: httpx.Headers) -> float:
    """Seconds to wait: `Retry-After`, else the business-use-case estimate (minutes), else a default."""
    value = headers.get("retry-after")
    if value is not None:
        try:
            seconds = float(value)
        except ValueError:
            seconds = -1.0
        if 0 <= seconds <= 86400:
            return seconds
    usage = headers.get("x-business-use-case-usage")
    if usage:
        waits: list[float] = []
        try:
            parsed = json.loads(usage)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            for entries in parsed.values():
                for entry in entries if isinstance(entries, list) else []:
                    minutes = (
                        entry.get("estimated_time_to_regain_access") if isinstance(entry, dict) else None
                    )
                    if isinstance(minutes, int | float) and 0 < minutes <= 1440:
                        waits.append(float(minutes) * 60)
        if waits:
            return max(waits)
    return DEFAULT_RETRY_AFTER


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?\d{1,12}", value):
        return int(value)
    return None


def _string_field(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not re.fullmatch(r"[0-9A-Za-z_]{1,64}", value):
        raise Unavailable(f"Instagram answered without a valid {name}")
    return value


def _safe_path_segment(path: str) -> bool:
    # Ids come from the config (digits) or from Instagram's answers (checked by _string_field).
    return all(re.fullmatch(r"[0-9A-Za-z_.]{1,64}", part) for part in path.strip("/").split("/"))
