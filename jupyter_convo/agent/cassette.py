"""The cassette: every LLM exchange of a conversation, one JSON line each.

It keeps what was asked (model, messages, tools, parameters) and what came back (the
assembled ``LLMResponse`` as a dict, or the error), so a later run can be replayed with the
same answers served in order. Lines are redacted through the ``SecretRegistry`` before they
reach the file and flushed one by one; a torn last line (a crash mid-write) is dropped.
"""

from __future__ import annotations

import logging
import os
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel, Field, ValidationError

from ..events.redact import SecretRegistry

log = logging.getLogger(__name__)


class CassetteError(ValueError):
    """A cassette line in the middle of the file cannot be read (the file is damaged)."""


class CassetteEntry(BaseModel):
    """One LLM exchange: a response or an error (``final`` is False for retried attempts)."""

    timestamp: datetime
    request: dict[str, Any]
    response: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    latency: float = 0.0
    attempt: int = Field(default=1, ge=1)
    final: bool = True


class Cassette:
    """Append-only JSONL record of LLM exchanges. Thread-safe; opens the file on first write."""

    def __init__(self, path: str | Path, secrets: SecretRegistry | None = None) -> None:
        self.path = Path(path)
        self.secrets = secrets if secrets is not None else SecretRegistry()
        self._lock = threading.Lock()
        self._file: IO[str] | None = None

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
        """Append one exchange (redacted) and flush; returns the entry as stored."""
        if (response is None) == (error is None):
            raise ValueError("a cassette entry holds exactly one of response or error")
        entry = CassetteEntry(
            timestamp=datetime.now(timezone.utc),
            request=request,
            response=response,
            error=error,
            latency=latency,
            attempt=attempt,
            final=final,
        )
        line = self.secrets.redact(entry.model_dump_json())
        with self._lock:
            handle = self._open()
            handle.write(line + "\n")
            handle.flush()
        return CassetteEntry.model_validate_json(line)

    def entries(self) -> list[CassetteEntry]:
        """Every stored entry in order; a torn last line is skipped with a warning."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        lines = text.split("\n")
        # The text after the last newline is either "" or a line whose write never finished.
        complete, tail = lines[:-1], lines[-1]
        if tail:
            log.warning("Cassette %s: skipping a torn last line (%d chars)", self.path, len(tail))
        result: list[CassetteEntry] = []
        for number, line in enumerate(complete, start=1):
            if not line.strip():
                continue
            try:
                result.append(CassetteEntry.model_validate_json(line))
            except (ValidationError, ValueError) as exc:
                raise CassetteError(f"Cassette {self.path}, line {number}: {exc}") from exc
        return result

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def _open(self) -> IO[str]:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._drop_torn_tail()
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - kept open
        return self._file

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


def error_dict(code: str, message: str, status_code: int | None) -> dict[str, Any]:
    return {"code": code, "message": message, "status_code": status_code}


__all__ = ["Cassette", "CassetteEntry", "CassetteError", "error_dict"]
