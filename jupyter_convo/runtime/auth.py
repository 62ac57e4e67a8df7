"""The runtime's one credential: the per-conversation session key.

Every route but ``GET /alive`` presents it in ``X-Session-API-Key``. The key comes from the
environment (never the command line, where ``ps`` would show it) and may be replaced once by
the server when a warm-pool runtime is bound to a conversation.
"""

from __future__ import annotations

import hmac
import os
import threading
from collections.abc import Mapping

SESSION_KEY_HEADER = "X-Session-API-Key"
SESSION_KEY_ENV = "JUPYTER_CONVO_SESSION_KEY"
# A key this short could be guessed; the server's keys are 43 characters.
MIN_KEY_LENGTH = 16


class SessionKeyError(ValueError):
    """The session key is missing or unusable."""


def _validated(key: str | None, origin: str) -> str:
    if not key:
        raise SessionKeyError(f"{origin} is empty: the runtime refuses to run without a key")
    if len(key) < MIN_KEY_LENGTH:
        raise SessionKeyError(f"{origin} is shorter than {MIN_KEY_LENGTH} characters")
    return key


class SessionKey:
    """Holds the current key and checks presented ones in constant time."""

    def __init__(self, key: str) -> None:
        self._lock = threading.Lock()
        self._key = _validated(key, "the session key").encode()

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> SessionKey:
        env = os.environ if environ is None else environ
        value = env.get(SESSION_KEY_ENV)
        if value is None:
            raise SessionKeyError(
                f"{SESSION_KEY_ENV} is not set: the runtime refuses to run without a key"
            )
        return cls(_validated(value, SESSION_KEY_ENV))

    def check(self, presented: str | None) -> bool:
        """True when ``presented`` is the current key."""
        if not presented:
            return False
        with self._lock:
            current = self._key
        return hmac.compare_digest(presented.encode(), current)

    def rotate(self, new_key: str) -> None:
        """Use ``new_key`` from now on (binding a warm-pool runtime to its conversation)."""
        value = _validated(new_key, "session_api_key").encode()
        with self._lock:
            self._key = value
