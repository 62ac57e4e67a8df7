"""Secret redaction: every serialized event passes through a ``SecretRegistry``.

Registered values (API keys, tokens, anything a user marks secret) are replaced by
``<secret-hidden>`` in text and in JSON, including their JSON-escaped spelling, before an
event is written anywhere (log, WebSocket, export, server log).
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterable, Mapping

SECRET_PLACEHOLDER = "<secret-hidden>"
# Values shorter than this are too likely to be ordinary words or numbers.
MIN_SECRET_LENGTH = 6
SECRET_ENV_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL)", re.IGNORECASE)


class SecretRegistry:
    """A thread-safe set of secret values and the redaction that hides them."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self.add_many(secrets)

    def add(self, value: str | None) -> None:
        """Register one secret; short or empty values are ignored."""
        if not value or len(value) < MIN_SECRET_LENGTH:
            return
        # As typed, and JSON-escaped both ASCII-only and UTF-8 (pydantic writes UTF-8).
        spellings = {value, json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]}
        with self._lock:
            if spellings <= self._values:
                return
            self._values |= spellings
            # Longest first so a secret that contains another is hidden whole.
            ordered = sorted(self._values, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(v) for v in ordered))

    def add_many(self, values: Iterable[str | None]) -> None:
        for value in values:
            self.add(value)

    def add_from_environ(self, environ: Mapping[str, str] | None = None) -> None:
        """Register every environment value whose name looks like a credential."""
        env = os.environ if environ is None else environ
        self.add_many(value for name, value in env.items() if SECRET_ENV_NAME.search(name))

    def __contains__(self, value: object) -> bool:
        return value in self._values

    def __len__(self) -> int:
        return len(self._values)

    def redact(self, text: str) -> str:
        """Hide every registered secret in ``text`` (plain text or serialized JSON)."""
        pattern = self._pattern
        if pattern is None or not text:
            return text
        return pattern.sub(SECRET_PLACEHOLDER, text)
