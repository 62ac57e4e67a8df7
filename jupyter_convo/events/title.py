"""A conversation title made from its first message, for conversations started untitled."""

from __future__ import annotations

DEFAULT_MAX_CHARS = 60
ELLIPSIS = "…"
FALLBACK_TITLE = "New conversation"


def title_from_message(text: str, max_chars: int = DEFAULT_MAX_CHARS) -> str:
    """The first non-blank line, whitespace collapsed, cut at a word boundary.

    A cut title ends in an ellipsis and, with it, stays within ``max_chars``. A single word
    longer than the limit is cut inside the word rather than left whole.
    """
    if max_chars < 2:
        raise ValueError(f"max_chars must be at least 2, got {max_chars}")
    line = next((ln for ln in text.splitlines() if ln.strip()), "")
    words = line.split()
    if not words:
        return FALLBACK_TITLE
    title = " ".join(words)
    if len(title) <= max_chars:
        return title
    budget = max_chars - len(ELLIPSIS)
    cut = title[: budget + 1]
    space = cut.rfind(" ")
    head = (cut[:space] if space > 0 else title[:budget]).rstrip(" ,.;:-")
    return (head or title[:budget]) + ELLIPSIS
