"""Search arguments: page cursors, kind/source filters as index classes, the text filter."""

from __future__ import annotations

import base64
import binascii
import functools
import itertools
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TypedDict

from ..schema import EVENT_KINDS
from .indexed import IndexedLog
from .indexfile import SOURCE_ORDER, event_class
from .positions import class_table

SOURCES: frozenset[str] = frozenset(SOURCE_ORDER)
MAX_PAGE_LIMIT = 1000
TEXT_BATCH = 2048  # lines read at once by the text filter


class SearchFilters(TypedDict, total=False):
    """The keyword arguments of ``EventLog.search`` (for ``search_raw``)."""

    after_id: int | None
    before_id: int | None
    kind: str | Sequence[str] | None
    source: str | None
    text: str | None
    reverse: bool
    limit: int
    page_id: str | None


@dataclass(frozen=True)
class Query:
    """The filters of ``EventLog.search`` and ``count`` (ids are exclusive bounds)."""

    after_id: int | None = None
    before_id: int | None = None
    kind: str | Sequence[str] | None = None
    source: str | None = None
    text: str | None = None
    reverse: bool = False

    @classmethod
    def of(cls, filters: SearchFilters) -> tuple[Query, int, str | None]:
        """The query, limit and page_id given as ``search`` keywords."""
        query = cls(
            filters.get("after_id"),
            filters.get("before_id"),
            filters.get("kind"),
            filters.get("source"),
            filters.get("text"),
            filters.get("reverse", False),
        )
        return query, filters.get("limit", 100), filters.get("page_id")

    def check(self, page_id: str | None = None) -> None:
        """Raise ``ValueError`` naming a bad filter or cursor (even on an empty log)."""
        filter_table(self.kind, self.source)
        apply_cursor(page_id, self.reverse, self.after_id, self.before_id)


def page_positions(
    indexed: IndexedLog, query: Query, limit: int, page_id: str | None
) -> tuple[list[int], bool]:
    """The positions of one page, and whether there is more after it."""
    check_limit(limit)
    after_id, before_id = apply_cursor(page_id, query.reverse, query.after_id, query.before_id)
    bounded = Query(after_id, before_id, query.kind, query.source, query.text, query.reverse)
    found = list(itertools.islice(matching(indexed, bounded), limit + 1))
    return found[:limit], len(found) > limit


def count_matching(indexed: IndexedLog, query: Query) -> int:
    """How many events match, over all pages: from the index alone unless ``text`` is set."""
    if query.text is None:
        table = filter_table(query.kind, query.source)
        start, stop = indexed.positions.bounds(query.after_id, query.before_id)
        return indexed.positions.count(start, stop, table)
    return sum(1 for _ in matching(indexed, query))


def matching(indexed: IndexedLog, query: Query) -> Iterator[int]:
    """Positions of the matching events in the order asked (lazily: stop when you have
    enough)."""
    table = filter_table(query.kind, query.source)
    start, stop = indexed.positions.bounds(query.after_id, query.before_id)
    positions = indexed.positions.candidates(start, stop, table, query.reverse)
    if query.text is None:
        return positions
    return _text_matches(indexed, positions, TextFilter(query.text))


def _text_matches(
    indexed: IndexedLog, positions: Iterator[int], matches: TextFilter
) -> Iterator[int]:
    while batch := list(itertools.islice(positions, TEXT_BATCH)):
        for run in _neighbours(batch):
            low, high = min(run[0], run[-1]), max(run[0], run[-1]) + 1
            lines = indexed.run_lines(low, high)
            yield from (position for position in run if matches(lines[position - low]))


def _neighbours(batch: list[int]) -> Iterator[list[int]]:
    """Runs of consecutive positions (ascending or descending) in the order given."""
    run = batch[:1]
    for position in batch[1:]:
        if abs(position - run[-1]) == 1 and (len(run) < 2 or position - run[-1] == run[1] - run[0]):
            run.append(position)
        else:
            yield run
            run = [position]
    if run:
        yield run


def encode_cursor(last_id: int, reverse: bool) -> str:
    raw = json.dumps({"id": last_id, "reverse": reverse}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(page_id: str) -> tuple[int, bool]:
    try:
        raw = base64.urlsafe_b64decode(page_id + "=" * (-len(page_id) % 4))
        data = json.loads(raw)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"invalid page_id {page_id!r}: not a cursor from this log") from exc
    last_id = data.get("id") if isinstance(data, dict) else None
    reverse = data.get("reverse") if isinstance(data, dict) else None
    if type(last_id) is not int or not isinstance(reverse, bool):
        raise ValueError(f"invalid page_id {page_id!r}: not a cursor from this log")
    return last_id, reverse


def check_limit(limit: object) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise ValueError(f"limit must be an integer from 1 to {MAX_PAGE_LIMIT}")
    if not 1 <= limit <= MAX_PAGE_LIMIT:
        raise ValueError(f"limit must be from 1 to {MAX_PAGE_LIMIT}, got {limit}")
    return limit


def apply_cursor(
    page_id: str | None, reverse: bool, after_id: int | None, before_id: int | None
) -> tuple[int | None, int | None]:
    """The id bounds once a previous page's cursor is taken into account."""
    if page_id is None:
        return after_id, before_id
    last_id, cursor_reverse = decode_cursor(page_id)
    if cursor_reverse != reverse:
        raise ValueError("page_id was made for the other direction (reverse)")
    if reverse:
        return after_id, last_id if before_id is None else min(before_id, last_id)
    return (last_id if after_id is None else max(after_id, last_id)), before_id


def filter_table(kind: str | Sequence[str] | None, source: str | None) -> bytes | None:
    """Validate the kind and source filters; the index classes they select (None: all)."""
    wanted = None if kind is None else (kind,) if isinstance(kind, str) else tuple(kind)
    try:
        return _filter_table(wanted, source)
    except TypeError:  # unhashable: not kind names at all
        raise ValueError(f"unknown event kind filter {kind!r}") from None


@functools.lru_cache(maxsize=64)
def _filter_table(kind: tuple[str, ...] | None, source: str | None) -> bytes | None:
    kinds: tuple[str, ...] | None = None
    if kind is not None:
        wanted = tuple(dict.fromkeys(kind))
        unknown = [k for k in wanted if k not in EVENT_KINDS]
        if unknown or not wanted:
            raise ValueError(
                f"unknown event kind {unknown[0]!r}; expected one of {', '.join(EVENT_KINDS)}"
                if unknown
                else "kind filter is empty"
            )
        kinds = wanted
    if source is not None and source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; expected agent, user or environment")
    if kinds is None and source is None:
        return None
    sources = SOURCE_ORDER if source is None else (source,)
    return class_table([event_class(k, s) for k in kinds or EVENT_KINDS for s in sources])


class TextFilter:
    """Case-insensitive "contains" on a stored line, for the text as typed or JSON-escaped."""

    def __init__(self, text: str) -> None:
        escaped = json.dumps(text, ensure_ascii=False)[1:-1]
        self._ascii = text.isascii()  # decided on the text: "ß".casefold() is ASCII "ss"
        self._bytes: tuple[bytes, ...] = ()
        if self._ascii:
            self._bytes = tuple({needle.lower().encode() for needle in (text, escaped)})
        self._text = tuple({needle.casefold() for needle in (text, escaped)})

    def __call__(self, line: bytes) -> bool:
        if self._ascii:
            # ASCII bytes never occur inside a UTF-8 multi-byte sequence: bytes.lower is safe.
            lowered = line.lower()
            return any(needle in lowered for needle in self._bytes)
        folded = line.decode("utf-8", "replace").casefold()
        return any(needle in folded for needle in self._text)
