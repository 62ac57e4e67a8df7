"""Titles from a first message: the function lives in ``events.title`` (the fold uses it)."""

from __future__ import annotations

from ..events.title import DEFAULT_MAX_CHARS, ELLIPSIS, FALLBACK_TITLE, title_from_message

__all__ = ["DEFAULT_MAX_CHARS", "ELLIPSIS", "FALLBACK_TITLE", "title_from_message"]
