"""One owner per data dir: the lock a conversation manager holds while it runs.

Two Jupyter servers of one user share the default data dir. Both managing it would be
destructive: each "finds again" the other's runtimes, settles the other's conversations as
lost and removes their records. So a manager takes ``<data_dir>/owner.lock`` (an advisory
``flock``, held on an open file for the manager's whole life) before it touches anything,
and writes who it is (pid, server URL, start time) into the file. A second manager is
refused with ``DataDirInUse`` naming the holder. The lock dies with its process, so the
next server takes over the data dir of one that crashed or was killed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

LOCK_FILE_NAME = "owner.lock"
MAX_DETAILS_BYTES = 64 * 1024


class DataDirInUse(RuntimeError):
    """Another live process manages this data dir; ``holder`` says who (may be empty)."""

    def __init__(self, data_dir: Path, holder: dict[str, Any]) -> None:
        self.data_dir = data_dir
        self.holder = holder
        super().__init__(describe_refusal(data_dir, holder))


def describe_refusal(data_dir: Path, holder: dict[str, Any]) -> str:
    who = []
    if holder.get("pid"):
        who.append(f"pid {holder['pid']}")
    if holder.get("url"):
        who.append(str(holder["url"]))
    if holder.get("host") and holder.get("host") != socket.gethostname():
        who.append(f"on host {holder['host']}")
    if holder.get("started_at"):
        who.append(f"since {holder['started_at']}")
    named = f" ({', '.join(who)})" if who else ""
    return (
        f"the data dir {data_dir} is in use by another Jupyter server{named}; one data dir "
        "has one owner at a time: stop that server, or give this one its own "
        "c.ConvoExtension.data_dir"
    )


class DataDirLock:
    """The data dir's owner lock (see the module doc)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.path = data_dir / LOCK_FILE_NAME
        self._fd: int | None = None
        self._since = ""

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, details: dict[str, Any] | None = None) -> None:
        """Take the lock (idempotent) and record ``details`` (pid, url...) in it; raises
        ``DataDirInUse`` while another process holds it."""
        if self._fd is not None:
            self._write(details)
            return
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_details(fd)
            os.close(fd)
            raise DataDirInUse(self.data_dir, holder) from None
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._since = datetime.now(timezone.utc).isoformat(timespec="seconds")
        previous = _read_details(fd)
        if previous.get("pid") and previous.get("pid") != os.getpid():
            log.info(
                "data dir %s: taking over from an owner that is gone (pid %s)",
                self.data_dir,
                previous.get("pid"),
            )
        self._write(details)

    def _write(self, details: dict[str, Any] | None) -> None:
        assert self._fd is not None
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started_at": self._since,
            **(details or {}),
        }
        data = (json.dumps(record, sort_keys=True) + "\n").encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)

    def release(self) -> None:
        """Give the data dir up (the file stays: the next owner reuses it)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)  # closing the last descriptor releases the flock


def _read_details(fd: int) -> dict[str, Any]:
    try:
        raw = os.pread(fd, MAX_DETAILS_BYTES, 0)
        data = json.loads(raw.decode("utf-8")) if raw.strip() else {}
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
