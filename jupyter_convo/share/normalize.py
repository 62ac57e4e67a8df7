"""Normalise observations so a replayed step can be compared with its recorded twin.

A re-run never matches byte for byte: timestamps, temporary paths, the workspace's location,
memory addresses (``<object at 0x7f...>``), durations and the layout of Python tracebacks
change between runs and versions while the work is the same. Both observations go through
the same rewriting, then through a line-based rendering, and the unified diff of the two
renderings is the step's verdict: empty means reproduced.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from ..events.schema import EventBase

WORKSPACE = "<workspace>"
# Fields that always differ between two runs and say nothing about the work done.
IGNORED_FIELDS = frozenset({"id", "timestamp", "cause", "tool_call_id", "execution_count"})
MAX_DIFF_CHARS = 20_000

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
# A conversation's default workspace, wherever its data root was: .../conversations/<id>/workspace
_DEFAULT_WORKSPACE = re.compile(r"(?:/[^\s'\"/:]+)*/conversations/[A-Za-z0-9_-]{1,64}/workspace")
_TEMP_PATH = re.compile(r"(?:/private)?/(?:tmp|var/folders|var/tmp)(?:/[^\s'\"(),:;\]]+)*")
_TIMESTAMP = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:Z|[+-]\d{2}:?\d{2}|\s?UTC)?"
)
# ``ls -l`` dates: "Mar  4 05:06" or "Mar  4  2025".
_LS_DATE = re.compile(
    r"\b(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)\s+\d{1,2}\s+(?:\d{1,2}:\d{2}|\d{4})\b"
)
_CLOCK = re.compile(r"\b\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?\b")
_ADDRESS = re.compile(r"\b0x[0-9a-fA-F]{6,}\b")
_DURATION = re.compile(
    r"(?<![\w.])\d+(?:\.\d+)?(?:e-?\d+)?\s?"
    r"(?:ns|us|µs|μs|ms|s|sec|secs|seconds?|min|minutes?)(?![\w])"
    r"|\b\d+m\d+(?:\.\d+)?s\b"
)


def _longest_first(roots: Iterable[str]) -> list[str]:
    """Distinct roots without a trailing slash, longest first (a root may contain another)."""
    return sorted({r.rstrip("/") for r in roots if r and r.strip("/")}, key=len, reverse=True)


def normalize_text(text: str, roots: Sequence[str] = ()) -> str:
    """``text`` with the run-specific parts replaced by placeholders.

    ``roots`` are the workspace paths of the run the text comes from; they (and any default
    ``.../conversations/<id>/workspace`` path) become ``<workspace>``.
    """
    if not text:
        return text
    text = _ANSI.sub("", text)
    for root in _longest_first(roots):
        text = text.replace(root, WORKSPACE)
    text = _DEFAULT_WORKSPACE.sub(WORKSPACE, text)
    text = _TEMP_PATH.sub("<tmp>", text)
    text = _TIMESTAMP.sub("<timestamp>", text)
    text = _LS_DATE.sub("<date>", text)
    text = _CLOCK.sub("<time>", text)
    text = _ADDRESS.sub("0x<address>", text)
    return _DURATION.sub("<duration>", text)


def normalize_value(value: Any, roots: Sequence[str] = (), *, key: str = "") -> Any:
    """A JSON value with every string normalised; image data is reduced to its MIME type."""
    if key.startswith("image/"):
        return f"<{key}>"
    if isinstance(value, str):
        return normalize_text(value, roots)
    if isinstance(value, dict):
        return {k: normalize_value(v, roots, key=str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [normalize_value(v, roots) for v in value]
    return value


def normalize_observation(
    event: EventBase | None, roots: Sequence[str] = ()
) -> dict[str, Any] | None:
    """The comparable part of an observation (None stays None: "no observation")."""
    if event is None:
        return None
    data = event.model_dump(mode="json", exclude=set(IGNORED_FIELDS))
    error = data.get("error")
    if isinstance(error, dict) and "traceback" in error:
        # IPython lays tracebacks out differently from version to version (frame headers,
        # arrows, context lines): the exception's name and value say what happened.
        error["traceback"] = "<traceback>" if error["traceback"] else []
    normalized = normalize_value(data, roots)
    assert isinstance(normalized, dict)
    return normalized


def render_lines(value: Any, indent: str = "") -> Iterator[str]:
    """A readable line form of a JSON value: multi-line strings stay multi-line in diffs."""
    if isinstance(value, dict):
        for key in sorted(value):
            item = value[key]
            if isinstance(item, (dict, list)) and item:
                yield f"{indent}{key}:"
                yield from render_lines(item, indent + "  ")
            elif isinstance(item, str) and "\n" in item:
                yield f"{indent}{key}: |"
                yield from (f"{indent}  {line}" for line in item.split("\n"))
            else:
                yield f"{indent}{key}: {json.dumps(item, ensure_ascii=False)}"
    elif isinstance(value, list):
        for item in value:
            lines = list(render_lines(item, indent + "  "))
            if lines:
                yield f"{indent}- {lines[0].lstrip()}"
                yield from lines[1:]
            else:
                yield f"{indent}- {json.dumps(item, ensure_ascii=False)}"
    elif isinstance(value, str) and "\n" in value:
        yield from (f"{indent}{line}" for line in value.split("\n"))
    else:
        yield f"{indent}{json.dumps(value, ensure_ascii=False)}"


def _rendered(value: dict[str, Any] | None) -> list[str]:
    return ["(no observation)"] if value is None else list(render_lines(value))


def observation_diff(
    recorded: EventBase | None,
    replayed: EventBase | None,
    *,
    recorded_roots: Sequence[str] = (),
    replayed_roots: Sequence[str] = (),
    max_chars: int = MAX_DIFF_CHARS,
) -> str:
    """The unified diff of the two normalised observations; "" when they agree."""
    before = normalize_observation(recorded, recorded_roots)
    after = normalize_observation(replayed, replayed_roots)
    if before == after:
        return ""
    recorded_name = f"recorded #{recorded.id}" if recorded is not None else "recorded"
    replayed_name = f"replayed #{replayed.id}" if replayed is not None else "replayed"
    diff = "\n".join(
        difflib.unified_diff(
            _rendered(before),
            _rendered(after),
            recorded_name,
            replayed_name,
            lineterm="",
        )
    )
    if len(diff) > max_chars:
        cut = len(diff) - max_chars
        diff = f"{diff[:max_chars]}\n[... {cut} more characters of diff]"
    return diff


def rebase_text(text: str, old_roots: Iterable[str], new_root: str) -> str:
    """``text`` with the recorded workspace's paths pointing at the new workspace instead."""
    for root in _longest_first(old_roots):
        if root != new_root:
            text = text.replace(root, new_root)
    return text


def default_workspace_roots(text: str) -> set[str]:
    """Default-layout workspace paths (``.../conversations/<id>/workspace``) found in ``text``."""
    return set(_DEFAULT_WORKSPACE.findall(text))


__all__ = [
    "IGNORED_FIELDS",
    "WORKSPACE",
    "default_workspace_roots",
    "normalize_observation",
    "normalize_text",
    "normalize_value",
    "observation_diff",
    "rebase_text",
    "render_lines",
]
