"""Titles on their way into the store: the one function every write path uses.

A title is shown in lists, searched, exported and sent to every watcher, so it must hold no
secret, whichever way it was written: given at creation, renamed with ``PATCH``, carried by
an import, made from the first message, or a replay's "Replay of ...". ``clean_title`` is
applied on each of those paths.
"""

from __future__ import annotations

from ..events.redact import SecretRegistry

# The longest title the API takes (longer ones are refused there and in imports).
MAX_TITLE_CHARS = 200
ELLIPSIS = "…"


def clean_title(raw: str | None, secrets: SecretRegistry | None = None) -> str | None:
    """``raw`` as stored: secrets hidden, outer whitespace trimmed, at most
    ``MAX_TITLE_CHARS`` characters (hiding a secret may lengthen it); None when blank."""
    if raw is None:
        return None
    text = raw.strip()
    if not text:
        return None
    if secrets is not None:
        text = secrets.redact(text)
    if len(text) > MAX_TITLE_CHARS:
        text = text[: MAX_TITLE_CHARS - len(ELLIPSIS)].rstrip() + ELLIPSIS
    return text
