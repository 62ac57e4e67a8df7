"""Opening the log file: one writer (an advisory ``flock``), any number of readers.

The index file beside the log has a lock of its own: whoever rewrites or extends it holds
it. The log's writer holds both for as long as it is open; a reader takes the index lock
only if it is free (then no writer is running) and only while it repairs the index.
"""

from __future__ import annotations

import os
from pathlib import Path

from .model import EventLogLocked

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory lock, one writer by convention
    fcntl = None  # type: ignore[assignment]


def open_writer(path: Path) -> int:
    """The log opened for appending, locked against a second writer (``EventLogLocked``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise EventLogLocked(
                f"{path} is already open for writing (one writer per log; "
                "open it with read_only=True to read)"
            ) from None
        except BaseException:
            os.close(fd)
            raise
    return fd


def open_reader(path: Path) -> int | None:
    """The log opened for reading, or None while it does not exist."""
    try:
        return os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None


def lock_index(fd: int, *, wait: bool) -> bool:
    """Take the index lock on ``fd``; False if ``wait`` is off and someone else holds it."""
    if fcntl is None:  # pragma: no cover - Windows
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    return True


def unlock_index(fd: int) -> None:
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
