"""The file format: one redacted JSON event per line, written whole, read back in spans.

A line is written in one ``os.write`` of the whole line and its newline, so a crash leaves
at most an incomplete last line (no newline yet): scanning stops before it and hands it
back as the tail. Lines are read back by byte offset (``pread``), neighbours in one call.
"""

from __future__ import annotations

import logging
import os
import zlib
from collections.abc import Callable, Iterator
from typing import Any

from pydantic import ValidationError
from pydantic_core import PydanticSerializationError

from ..redact import SecretRegistry
from ..schema import EVENT_ADAPTER, Event, EventBase, event_to_dict, event_to_json
from .model import EventLogError

log = logging.getLogger(__name__)

PREVIEW_CHARS = 120
READ_CHUNK = 4 * 1024 * 1024  # scanning the file on open / refresh
MAX_SPAN = 8 * 1024 * 1024  # largest single read when loading neighbouring lines
CHECK_HEAD = 64  # line_check covers this many first bytes (id and timestamp)...
CHECK_TAIL = 32  # ...and this many last ones

# The compiled validator itself: the same checks as EVENT_ADAPTER.validate_json, less overhead.
_validate_json = EVENT_ADAPTER.validator.validate_json


def parse(line: bytes | str) -> Event:
    """One stored line as an event (raises ``pydantic.ValidationError``)."""
    event: Event = _validate_json(line)
    return event


def parse_error(exc: ValidationError) -> str:
    """Why a line is not an event, in a few words."""
    first = exc.errors(include_url=False)[0]
    if first.get("type") == "json_invalid":
        return "not valid JSON"
    where = ".".join(str(part) for part in first.get("loc", ()))
    return f"not a valid event: {where + ': ' if where else ''}{first.get('msg', exc)}"


def preview(data: bytes, secrets: SecretRegistry | None) -> str:
    """The start of a line for a report or a log message, redacted."""
    text = data[: PREVIEW_CHARS * 4].decode("utf-8", "replace")[:PREVIEW_CHARS]
    return secrets.redact(text) if secrets is not None else text


def line_check(line: bytes) -> int:
    """A checksum of the line's first and last bytes: tells a line from any other cheaply.

    The head holds the id and a microsecond timestamp, so lines of different logs differ
    there; a check over the whole line would cost a pass over every byte read.
    """
    return zlib.crc32(line[-CHECK_TAIL:], zlib.crc32(line[:CHECK_HEAD]))


def _seek_read(fd: int, length: int, offset: int) -> bytes:  # pragma: no cover - Windows
    os.lseek(fd, offset, os.SEEK_SET)  # callers hold the log's lock
    return os.read(fd, length)


pread: Callable[[int, int, int], bytes] = getattr(os, "pread", _seek_read)


class LineScanner:
    """The complete lines between two offsets, as ``(offset, line)``; then ``tail``.

    ``tail`` is what follows the last newline (an incomplete line) once iteration ends;
    ``end`` is the offset just after the last complete line.
    """

    def __init__(self, fd: int, start: int, size: int) -> None:
        self.fd = fd
        self.end = start
        self.size = size
        self.tail = b""

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        pending = bytearray()  # a line longer than a chunk grows here without re-copying
        offset = self.end
        while offset < self.size:
            chunk = pread(self.fd, min(READ_CHUNK, self.size - offset), offset)
            if not chunk:
                break  # the file shrank under us; a reader's refresh notices next time
            offset += len(chunk)
            cut = chunk.rfind(b"\n")
            if cut < 0:
                pending += chunk
                continue
            block = bytes(pending) + chunk[:cut] if pending else chunk[:cut]
            pending = bytearray(chunk[cut + 1 :])
            for line in block.split(b"\n"):
                start = self.end
                self.end += len(line) + 1
                yield start, line
        self.tail = bytes(pending)


def append_line(fd: int, data: bytes, offset: int, *, fsync: bool, path: object) -> None:
    """Write ``data`` (a line and its newline) at the end; on failure leave no torn line."""
    view = memoryview(data)
    try:
        while view:
            written = os.write(fd, view)
            view = view[written:]
        if fsync:
            os.fsync(fd)
    except OSError:
        # Disk full...: the log stays as it was.
        try:
            os.ftruncate(fd, offset)
        except OSError:
            log.exception("Could not roll back a failed write to %s", path)
        raise


def serialize(
    event: EventBase, event_id: int, secrets: SecretRegistry | None
) -> tuple[bytes, Event]:
    """The redacted line for ``event`` and the event parsed back from it (both agree)."""
    try:
        text = event_to_json(event.model_copy(update={"id": event_id}))
    except PydanticSerializationError as exc:
        raise EventLogError(f"a {event.kind!r} event cannot be stored: {exc}") from exc
    redacted = secrets.redact(text) if secrets is not None else text
    try:
        stored = parse(redacted)
    except ValidationError as exc:
        if secrets is None or redacted == text:
            raise EventLogError(
                f"a {event.kind!r} event cannot be stored: {parse_error(exc)}"
            ) from exc
        # A secret matched JSON syntax (a key, a number): hide it in string values only.
        stored = _redact_fields(event, event_id, secrets)
        redacted = event_to_json(stored)
    return redacted.encode(), stored


def _redact_fields(event: EventBase, event_id: int, secrets: SecretRegistry) -> Event:
    data = event_to_dict(event.model_copy(update={"id": event_id}))
    kind = data.get("kind")
    data = _redact_values(data, secrets)
    data["kind"] = kind
    try:
        return EVENT_ADAPTER.validate_python(data)
    except ValidationError as exc:
        raise EventLogError(
            f"a {event.kind!r} event cannot be stored without revealing a secret: "
            f"{parse_error(exc)}"
        ) from exc


def _redact_values(value: Any, secrets: SecretRegistry) -> Any:
    """Redact every string inside a JSON-like value (keys are field names, left alone)."""
    if isinstance(value, str):
        return secrets.redact(value)
    if isinstance(value, list):
        return [_redact_values(item, secrets) for item in value]
    if isinstance(value, dict):
        return {key: _redact_values(item, secrets) for key, item in value.items()}
    return value
