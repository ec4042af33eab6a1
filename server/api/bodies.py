"""Request bodies read with a running size limit: a body without ``Content-Length`` (chunked)
is refused with ``too_long`` as soon as it crosses the limit, never after it has been read."""

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from litestar import Request
from multipart import (
    MultipartError,
    MultipartSegment,
    ParserLimitReached,
    PushMultipartParser,
    parse_options_header,
)

from server.errors import BadInput, TooLong

__all__ = ["FilePart", "read_body", "read_file_part"]

#: Room for the multipart framing (boundaries, part headers) around an upload of the limit.
MULTIPART_OVERHEAD = 64 * 1024


@dataclass(frozen=True, slots=True)
class FilePart:
    name: str
    filename: str
    content_type: str | None
    data: bytes


async def _bounded(request: Request[Any, Any, Any], limit: int, what: str) -> AsyncIterator[bytes]:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise TooLong(f"{what} are limited to {limit} bytes")  # refused before anything is read
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise TooLong(f"{what} are limited to {limit} bytes")
        yield chunk


async def read_body(request: Request[Any, Any, Any], limit: int, what: str = "bodies") -> bytes:
    """The whole body, at most ``limit`` bytes."""
    return b"".join([chunk async for chunk in _bounded(request, limit, what)])


async def read_file_part(request: Request[Any, Any, Any], field: str, limit: int) -> FilePart:
    """The first file part named ``field`` of a multipart body; its data is at most ``limit``
    bytes and the whole body at most ``limit`` plus the framing. Other parts are skipped."""
    _ctype, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get("boundary")
    if not boundary:
        raise BadInput("multipart upload without a boundary", field=field)
    found: FilePart | None = None
    current: MultipartSegment | None = None
    data = bytearray()
    try:
        parts = request.app.state.settings.max_multipart_parts
        with PushMultipartParser(boundary, max_segment_count=parts, max_segment_size=limit) as parser:
            async for chunk in _bounded(request, limit + MULTIPART_OVERHEAD, "uploads"):
                for event in parser.parse(chunk):
                    if isinstance(event, MultipartSegment):
                        current, data = event, bytearray()
                    elif event is None:
                        if found is None and current is not None and current.name == field and current.filename:
                            found = FilePart(field, current.filename, current.content_type, bytes(data))
                        current, data = None, bytearray()
                    elif current is not None and current.name == field and found is None:
                        data.extend(event)
                if parser.closed:
                    break
    except ParserLimitReached:
        raise TooLong(f"uploads are limited to {limit} bytes") from None
    except MultipartError as exc:
        raise BadInput(f"malformed multipart body: {exc}", field=field) from None
    if found is None:
        raise BadInput(f"multipart upload needs a '{field}' field", field=field)
    return found
