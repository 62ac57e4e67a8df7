"""Process runtimes that run without a record: found from ``/proc``, not from ``runtime.json``.

A runtime outlives its server by design and is found again through its ``runtime.json``. If
that record is lost (removed by hand, or by a server that should not have touched it), the
runtime keeps running unknown, holding its conversation's log lock, and no new runtime can
start for it. These helpers find such processes by their command line (``python -m
jupyter_convo.runtime --conversations-root ROOT ... --ready-file ROOT/ID/runtime.ready``),
so the manager can take them over (the port is in the ready file; the session key proves
the runtime serves the conversation) or stop them. Linux only (elsewhere: none found).
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection
from pathlib import Path

from .base import RuntimeHandle


def runtime_processes(
    conversations_root: Path,
    host: str,
    server_instance_id: str,
    *,
    known: Collection[int] = (),
    module: str = "jupyter_convo.runtime",
) -> list[RuntimeHandle]:
    """Every live runtime process of ``conversations_root`` that is not (under) one of
    the ``known`` pids, as handles: the outermost process of each runtime (a launcher
    wrapping the interpreter counts once)."""
    root = conversations_root.resolve()
    matching: dict[int, str] = {}
    for pid, args in _candidates(module.encode()):
        conversation_id = _runtime_conversation(args, root, module)
        if conversation_id is not None and _alive(pid):
            matching[pid] = conversation_id
    handles = []
    for pid, conversation_id in matching.items():
        ancestors = _ancestors(pid)
        if ancestors & set(matching):
            continue  # the interpreter inside a launcher that matched already
        if pid in known or ancestors & set(known):
            continue
        try:
            pgid = os.getpgid(pid)
        except ProcessLookupError:
            continue
        handles.append(
            RuntimeHandle(
                conversation_id=conversation_id,
                kind="process",
                host=host,
                port=_ready_port(root / conversation_id / "runtime.ready"),
                runtime_id=str(pid),
                server_instance_id=server_instance_id,
                pid=pid,
                pgid=pgid,
            )
        )
    return handles


def _candidates(needle: bytes) -> list[tuple[int, list[str]]]:
    """(pid, arguments) of the processes whose command line mentions ``needle`` (one read
    per process: a start runs this scan)."""
    found: list[tuple[int, list[str]]] = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return found
    for name in entries:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as handle:
                raw = handle.read()
        except OSError:
            continue
        if needle in raw:
            args = [arg.decode("utf-8", "surrogateescape") for arg in raw.split(b"\0") if arg]
            found.append((int(name), args))
    return found


def _stat_fields(pid: int) -> list[str]:
    """The fields of /proc/<pid>/stat after the command name: state, ppid, ..."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(errors="replace")
    except OSError:
        return []
    return stat.rpartition(")")[2].split()


def _alive(pid: int) -> bool:
    fields = _stat_fields(pid)
    return bool(fields) and fields[0] != "Z"


def _ancestors(pid: int) -> set[int]:
    found: set[int] = set()
    current = pid
    while True:
        fields = _stat_fields(current)
        if len(fields) < 2:
            return found
        parent = int(fields[1])
        if parent <= 1 or parent in found:
            return found
        found.add(parent)
        current = parent


def _runtime_conversation(args: list[str], root: Path, module: str) -> str | None:
    if module not in args:
        return None
    conversations_root = _option(args, "--conversations-root")
    ready_file = _option(args, "--ready-file")
    if conversations_root is None or ready_file is None:
        return None
    try:
        if Path(conversations_root).resolve() != root:
            return None
        conversation_dir = Path(ready_file).resolve().parent
    except OSError:
        return None
    if conversation_dir.parent != root:
        return None
    return conversation_dir.name


def _option(args: list[str], name: str) -> str | None:
    for index, arg in enumerate(args[:-1]):
        if arg == name:
            return args[index + 1]
    prefix = name + "="
    return next((arg[len(prefix) :] for arg in args if arg.startswith(prefix)), None)


def _ready_port(path: Path) -> int:
    """The port the runtime announced in its ready file (0 if unknown: then it cannot be
    taken over, only stopped)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return int(data["port"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0
