"""Parsed events by id, bounded by the total size of their stored lines."""

from __future__ import annotations

from ..schema import Event

# Counted in stored line bytes; a parsed event takes about 4 times its line in memory.
DEFAULT_CACHE_BYTES = 4 * 1024 * 1024


class EventCache:
    """Oldest entries go first once ``max_bytes`` of lines are held; a line larger than a
    quarter of the budget is not kept at all."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: dict[int, tuple[Event, int]] = {}
        self._bytes = 0

    def get(self, event_id: int) -> Event | None:
        item = self._items.get(event_id)
        return item[0] if item is not None else None

    def put(self, event: Event, size: int) -> None:
        if size > self.max_bytes // 4 or event.id in self._items:
            return
        self._items[event.id] = (event, size)
        self._bytes += size
        while self._bytes > self.max_bytes:
            # dicts keep insertion order: the first key is the oldest entry.
            _, dropped = self._items.pop(next(iter(self._items)))
            self._bytes -= dropped

    def clear(self) -> None:
        self._items.clear()
        self._bytes = 0
