"""Reading an upload off the wire without buffering it: raw bodies and streamed multipart/form-data."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from email.message import Message
from typing import Any

import multipart
from litestar import Request

from gateway.errors import ClientDisconnected, ValidationFailed
from tenants.inputs import is_line

FIELD_LIMIT = 2048
FIELDS = ("connection_id", "path")


def filename_from_disposition(header: str | None) -> str | None:
    """The file name of a `Content-Disposition` header, preferring RFC 5987 `filename*`."""
    if not header:
        return None
    # The stdlib's email package decodes RFC 2231 / 5987 parameters (`filename*=UTF-8''…`) correctly.
    message = Message()
    message["content-disposition"] = header
    try:
        name = message.get_filename()
    except (LookupError, UnicodeDecodeError, ValueError):
        raise ValidationFailed("Content-Disposition filename is not decodable") from None
    return str(name) if name else None


def optional_uuid(value: str | None, name: str) -> uuid.UUID | None:
    if value is None or value == "":
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        raise ValidationFailed(f"{name} must be a UUID") from None


async def body_stream(request: Request[Any, Any, Any]) -> AsyncIterator[bytes]:
    """The request body as it arrives (`FilegateRequest.stream`: a client that goes away or stalls past
    the idle timeout raises `ClientDisconnected`, a client error, not a server one)."""
    async for chunk in request.stream():
        if chunk:
            yield chunk


async def until_disconnect(chunks: AsyncIterator[bytes], expected: int | None) -> AsyncIterator[bytes]:
    """For resumable uploads: keep what arrived before the connection was cut; the client resumes from there."""
    total = 0
    try:
        async for chunk in chunks:
            total += len(chunk)
            if expected is not None and total > expected:
                raise ValidationFailed("the body is longer than its Content-Length")
            yield chunk
    except ClientDisconnected:
        return


async def counted(chunks: AsyncIterator[bytes], expected: int | None) -> AsyncIterator[bytes]:
    """Pass chunks through; a body that ends short of its declared length is refused."""
    total = 0
    async for chunk in chunks:
        total += len(chunk)
        if expected is not None and total > expected:
            raise ValidationFailed("the body is longer than its Content-Length")
        yield chunk
    if expected is not None and total != expected:
        raise ValidationFailed("the body is shorter than its Content-Length")


def _field_text(name: str, value: bytearray) -> str:
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        raise ValidationFailed(f"form field {name} is not UTF-8") from None
    if not is_line(text):
        raise ValidationFailed(f"form field {name} must not contain control characters")
    return text


class MultipartUpload:
    """One `file` part, streamed; the optional fields `connection_id` and `path` must come before it."""

    def __init__(self, stream: AsyncIterator[bytes], content_type: str) -> None:
        _, options = multipart.parse_options_header(content_type)
        boundary = options.get("boundary")
        if not boundary or len(boundary) > 200:
            raise ValidationFailed("multipart/form-data needs a boundary")
        self._stream = stream
        self._parser = multipart.PushMultipartParser(
            boundary, max_header_size=4096, max_header_count=8, max_segment_count=len(FIELDS) + 1, strict=True
        )
        self._events = self._pump()
        self.fields: dict[str, str] = {}
        self.filename: str | None = None
        self.content_type: str | None = None

    async def _pump(self) -> AsyncIterator[object]:
        try:
            async for chunk in self._stream:
                if chunk:
                    for event in self._parser.parse(chunk):
                        yield event
            for event in self._parser.parse(b""):
                yield event
            self._parser.close()
        except multipart.MultipartError as exc:
            raise ValidationFailed(f"malformed multipart body: {str(exc)[:120]}") from None

    async def start(self) -> None:
        """Read up to the file part, collecting the fields before it."""
        current: str | None = None
        value = bytearray()
        async for event in self._events:
            if isinstance(event, multipart.MultipartSegment):
                if event.name == "file" and event.filename is not None:
                    self.filename, self.content_type = event.filename, event.content_type
                    return
                if event.name not in FIELDS or event.name in self.fields:
                    raise ValidationFailed(
                        "expected the fields connection_id, path and one part named 'file'"
                    )
                current, value = event.name, bytearray()
            elif event is None:
                if current is not None:
                    self.fields[current] = _field_text(current, value)
                current = None
            elif isinstance(event, bytes | bytearray):
                value += event
                if len(value) > FIELD_LIMIT:
                    raise ValidationFailed("form field too long")
        raise ValidationFailed("no part named 'file' with a filename")

    async def chunks(self) -> AsyncIterator[bytes]:
        """The file part's bytes; anything but the end of the body after it is refused."""
        async for event in self._events:
            if event is None:
                break
            if isinstance(event, bytes | bytearray):
                yield bytes(event)
        async for event in self._events:
            if isinstance(event, multipart.MultipartSegment):
                raise ValidationFailed("the 'file' part must be the last part of the form")
