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
import logging
import os
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from .base import RuntimeHandle

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Process:
    pid: int
    ppid: int
    args: list[str]


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
    processes = _processes()
    matching: dict[int, str] = {}
    for process in processes.values():
        conversation_id = _runtime_conversation(process.args, root, module)
        if conversation_id is not None:
            matching[process.pid] = conversation_id
    handles = []
    for pid, conversation_id in matching.items():
        if _has_ancestor(pid, processes, set(matching)):
            continue  # the interpreter inside a launcher that matched already
        if pid in known or _has_ancestor(pid, processes, set(known)):
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


def _processes() -> dict[int, _Process]:
    found: dict[int, _Process] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return found
    for name in entries:
        if not name.isdigit():
            continue
        pid = int(name)
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
            stat = Path(f"/proc/{pid}/stat").read_text(errors="replace")
        except OSError:
            continue
        # Fields after the parenthesised command name: state, ppid, ...
        fields = stat.rpartition(")")[2].split()
        if len(fields) < 2 or fields[0] == "Z":
            continue
        args = [arg.decode("utf-8", "surrogateescape") for arg in raw.split(b"\0") if arg]
        found[pid] = _Process(pid, int(fields[1]), args)
    return found


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


def _has_ancestor(pid: int, processes: dict[int, _Process], ancestors: set[int]) -> bool:
    seen: set[int] = set()
    current = processes.get(pid)
    while current is not None and current.ppid not in seen and current.ppid > 1:
        if current.ppid in ancestors:
            return True
        seen.add(current.ppid)
        current = processes.get(current.ppid)
    return False


def _ready_port(path: Path) -> int:
    """The port the runtime announced in its ready file (0 if unknown: then it cannot be
    taken over, only stopped)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return int(data["port"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0
