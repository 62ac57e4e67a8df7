"""The cassette: every LLM exchange of a conversation, one JSON line each.

It keeps what was asked (model, messages, tools, parameters) and what came back (the
assembled ``LLMResponse`` as a dict, or the error), so a later run can be replayed with the
same answers served in order. Lines are redacted through the ``SecretRegistry`` before they
reach the file and written one by one; a torn last line (a crash mid-write) is dropped.

Each request repeats the whole history before it, so storing requests whole grows with the
square of the conversation. A line holds either the whole ``request`` (the first line a
``Cassette`` writes, and the only form of cassettes written before this format) or a
``patch`` against the request of the line before it: how many leading messages it keeps,
the messages after those, and the top-level fields that changed or went. So each message
is stored once while the history only grows. ``entries()`` rebuilds the whole requests.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..events.redact import SecretRegistry

log = logging.getLogger(__name__)


class CassetteError(ValueError):
    """A cassette line in the middle of the file cannot be read (the file is damaged)."""

    def __init__(self, message: str, *, line: int = 0, reason: str = "") -> None:
        super().__init__(message)
        self.line = line
        self.reason = reason or message


class CassetteEntry(BaseModel):
    """One LLM exchange: a response or an error (``final`` is False for retried attempts)."""

    timestamp: datetime
    request: dict[str, Any]
    response: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    latency: float = 0.0
    attempt: int = Field(default=1, ge=1)
    final: bool = True


class RequestPatch(BaseModel):
    """A request as a change to the one before it: ``messages[:keep]`` of that one, then
    ``messages``; ``fields`` set (new or changed values), ``removed`` gone."""

    model_config = ConfigDict(extra="forbid")

    keep: int = Field(ge=0)
    messages: list[Any] = Field(default_factory=list)
    fields: dict[str, Any] = Field(default_factory=dict)
    removed: list[str] = Field(default_factory=list)


class StoredLine(BaseModel):
    """One line of the file: ``CassetteEntry`` with the request whole or as a patch."""

    timestamp: datetime
    request: dict[str, Any] | None = None
    patch: RequestPatch | None = None
    response: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    latency: float = 0.0
    attempt: int = Field(default=1, ge=1)
    final: bool = True

    @model_validator(mode="after")
    def _one_request(self) -> StoredLine:
        if (self.request is None) == (self.patch is None):
            raise ValueError("a cassette line holds exactly one of request or patch")
        return self


def make_patch(before: dict[str, Any], request: dict[str, Any]) -> RequestPatch | None:
    """``request`` as a patch on ``before``; None when it has no message list to share."""
    old, new = before.get("messages"), request.get("messages")
    if not isinstance(old, list) or not isinstance(new, list):
        return None
    keep = _common_prefix(old, new)
    return RequestPatch(
        keep=keep,
        messages=new[keep:],
        fields={k: v for k, v in request.items() if k != "messages" and before.get(k, _NO) != v},
        removed=[k for k in before if k not in request],
    )


_NO = object()


def _common_prefix(old: list[Any], new: list[Any]) -> int:
    """How many leading items the lists share (list comparisons run in C)."""
    if new[: len(old)] == old:
        return min(len(old), len(new))  # the usual case: the history only grew
    low, high = 0, min(len(old), len(new))  # new[:low] == old[:low] holds
    while low < high:
        middle = (low + high + 1) // 2
        if new[:middle] == old[:middle]:
            low = middle
        else:
            high = middle - 1
    return low


def apply_patch(before: dict[str, Any], patch: RequestPatch) -> dict[str, Any]:
    """The whole request a patch stands for (``ValueError`` if it does not fit ``before``)."""
    old = before.get("messages")
    if not isinstance(old, list) or patch.keep > len(old):
        raise ValueError(f"the patch keeps {patch.keep} messages of a request that has fewer")
    request = {k: v for k, v in before.items() if k not in patch.removed}
    request.update(patch.fields)
    request["messages"] = [*old[: patch.keep], *patch.messages]
    return request


def iter_entries(
    lines: Iterable[bytes | str], where: str = "cassette", *, patches: bool = True
) -> Iterator[CassetteEntry]:
    """The entries of complete lines, in order, with whole requests. ``CassetteError``
    names the line that cannot be read (or patches a request, unless ``patches``)."""
    request: dict[str, Any] | None = None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            stored = StoredLine.model_validate_json(line)
            if stored.patch is None:
                assert stored.request is not None
                request = stored.request
            elif not patches:
                raise ValueError("a request patch, which this cassette format cannot hold")
            elif request is None:
                raise ValueError("a request patch with no request before it")
            else:
                request = apply_patch(request, stored.patch)
        except ValidationError as exc:
            error = exc.errors()[0]
            place = ".".join(str(part) for part in error["loc"]) or "(root)"
            reason = f"{place}: {error['msg']}"
            raise CassetteError(
                f"Cassette {where}, line {number}: {reason}", line=number, reason=reason
            ) from exc
        except ValueError as exc:
            raise CassetteError(
                f"Cassette {where}, line {number}: {exc}", line=number, reason=str(exc)
            ) from exc
        fields = stored.model_dump(exclude={"request", "patch"})
        yield CassetteEntry.model_construct(**fields, request=request)


def complete_lines(data: bytes) -> list[bytes]:
    """The lines before the last newline (what follows it is a line being written)."""
    return data[: data.rfind(b"\n") + 1].split(b"\n")[:-1]


class Cassette:
    """Append-only JSONL record of LLM exchanges. Thread-safe; opens the file on first write."""

    def __init__(self, path: str | Path, secrets: SecretRegistry | None = None) -> None:
        self.path = Path(path)
        self.secrets = secrets if secrets is not None else SecretRegistry()
        self._lock = threading.Lock()
        self._fd: int | None = None
        # The last request written, as given and as stored, and where the file ended then:
        # the next line is a patch on it only if nobody else wrote to the file meanwhile.
        self._given: dict[str, Any] | None = None
        self._stored: dict[str, Any] | None = None
        self._end = -1

    def record(
        self,
        request: dict[str, Any],
        response: dict[str, Any] | None,
        error: dict[str, Any] | None,
        latency: float,
        *,
        attempt: int = 1,
        final: bool = True,
    ) -> CassetteEntry:
        """Append one exchange (redacted); returns the entry as stored."""
        if (response is None) == (error is None):
            raise ValueError("a cassette entry holds exactly one of response or error")
        outcome: dict[str, Any] = {
            "response": response,
            "error": error,
            "latency": latency,
            "attempt": attempt,
            "final": final,
        }
        with self._lock:
            fd = self._open()
            patch = None
            # A patch only on our own last line: nobody else wrote to the file meanwhile.
            if self._given is not None and os.fstat(fd).st_size == self._end:
                patch = make_patch(self._given, request)
            line = StoredLine(
                timestamp=datetime.now(timezone.utc),
                request=request if patch is None else None,
                patch=patch,
                **outcome,
            ).model_dump_json(exclude={"patch" if patch is None else "request"})
            redacted = self.secrets.redact(line)
            stored = StoredLine.model_validate_json(redacted)
            if stored.patch is not None:
                assert self._stored is not None
                whole = apply_patch(self._stored, stored.patch)
            else:
                assert stored.request is not None
                whole = stored.request
            data = redacted.encode() + b"\n"
            written = 0
            while written < len(data):
                written += os.write(fd, data[written:])
            self._end = os.fstat(fd).st_size
            self._given = _remembered(request, self._given, patch)
            self._stored = whole
        fields = stored.model_dump(exclude={"request", "patch"})
        return CassetteEntry.model_construct(**fields, request=whole)

    def entries(self) -> list[CassetteEntry]:
        """Every stored entry in order, requests whole; a torn last line is skipped."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        lines = complete_lines(data)
        tail = len(data) - sum(len(line) + 1 for line in lines)
        if tail:
            log.warning("Cassette %s: skipping a torn last line (%d bytes)", self.path, tail)
        return list(iter_entries(lines, str(self.path)))

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            self._given = self._stored = None

    def _open(self) -> int:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._drop_torn_tail()
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        return self._fd

    def _drop_torn_tail(self) -> None:
        """Cut a partial last line so the next record does not glue onto it."""
        try:
            with open(self.path, "rb+") as handle:
                size = handle.seek(0, os.SEEK_END)
                if size == 0:
                    return
                handle.seek(size - 1)
                if handle.read(1) == b"\n":
                    return
                handle.seek(0)
                data = handle.read()
                keep = data.rfind(b"\n") + 1
                log.warning(
                    "Cassette %s: dropping a torn last line (%d bytes)", self.path, size - keep
                )
                handle.truncate(keep)
        except FileNotFoundError:
            return


def _remembered(
    request: dict[str, Any], before: dict[str, Any] | None, patch: RequestPatch | None
) -> dict[str, Any]:
    """``request`` as the next patch compares against: copies that a caller's later changes
    to its own dicts cannot reach. The messages a patch kept equal ``before``'s copies, so
    only the new ones are copied."""
    messages = request.get("messages")
    if not isinstance(messages, list):
        return dict(request)
    if patch is None or before is None:
        kept: list[Any] = []
    else:
        kept = before["messages"][: patch.keep]
    fresh = [dict(m) if isinstance(m, dict) else m for m in messages[len(kept) :]]
    return {**request, "messages": kept + fresh}


def error_dict(code: str, message: str, status_code: int | None) -> dict[str, Any]:
    return {"code": code, "message": message, "status_code": status_code}


__all__ = [
    "Cassette",
    "CassetteEntry",
    "CassetteError",
    "RequestPatch",
    "StoredLine",
    "apply_patch",
    "complete_lines",
    "error_dict",
    "iter_entries",
    "make_patch",
]
