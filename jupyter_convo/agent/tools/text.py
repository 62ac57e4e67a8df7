"""Shaping tool output text for the LLM: cut what is too long, clean terminal noise."""

from __future__ import annotations

import re

# CSI sequences (colours, cursor moves), OSC sequences (window titles, links) and the
# two-byte escapes; what a terminal would interpret rather than show.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")


def truncation_note(cut: int, total: int) -> str:
    """The line that stands where the middle of an output was removed."""
    return f"\n[... {cut} characters cut from the middle of this output ({total} in all) ...]\n"


def truncate_middle(text: str, limit: int) -> tuple[str, bool]:
    """``text`` cut to about ``limit`` characters, keeping its head and tail.

    The end of an output (the error, the summary) matters as much as its start, so both
    halves are kept and a note says how much was removed. Returns the text and whether
    anything was cut.
    """
    if len(text) <= limit:
        return text, False
    half = limit // 2
    return join_cut(text[:half], text[half:], limit, dropped=0), True


def join_cut(head: str, tail: str, limit: int, *, dropped: int) -> str:
    """The start of ``head`` and the end of ``tail`` (about ``limit`` characters in all)
    with a note counting what was left out, ``dropped`` characters between them included.
    """
    keep_head = min(len(head), limit // 2)
    keep_tail = min(len(tail), limit - keep_head)
    cut = len(head) - keep_head + dropped + len(tail) - keep_tail
    total = len(head) + dropped + len(tail)
    end = tail[len(tail) - keep_tail :] if keep_tail else ""
    return head[:keep_head] + truncation_note(cut, total) + end


def strip_ansi(text: str) -> str:
    """``text`` without terminal escape sequences (colours, cursor movement)."""
    return _ANSI.sub("", text)


def collapse_carriage_returns(text: str) -> str:
    """Keep what a terminal would finally show on lines redrawn with ``\\r`` (progress bars)."""
    if "\r" not in text:
        return text
    text = text.replace("\r\n", "\n")
    lines = []
    for line in text.split("\n"):
        if "\r" in line:
            parts = [part for part in line.split("\r") if part]
            line = parts[-1] if parts else ""
        lines.append(line)
    return "\n".join(lines)


def clean_terminal_output(text: str) -> str:
    """Terminal output as plain text: escapes removed, redrawn lines collapsed."""
    return collapse_carriage_returns(strip_ansi(text))
