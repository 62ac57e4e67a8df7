"""The ``file_editor`` tool: view and edit text files, strictly inside the workspace.

Every path goes through ``Workspace.resolve`` (symlinks followed first), so nothing
outside the workspace can be read or written; files are then opened through
``Workspace.open_file`` (no symlink on the way, no file with other hard links), because
this tool runs in the runtime, outside the agent's jail. Edits keep a per-file history for
``undo_edit`` and report a unified diff with workspace-relative paths.
"""

from __future__ import annotations

import asyncio
import difflib
import os
from pathlib import Path
from typing import Any

from ...events.schema import (
    ActionBase,
    EventBase,
    FileContentEvent,
    FileEditEvent,
    FileEditResultEvent,
    FileReadEvent,
)
from ..settings import AgentSettings
from ..workspace import Workspace, WorkspaceError
from .args import (
    SECURITY_RISK_PROPERTY,
    as_int,
    function_spec,
    optional_int,
    optional_str,
    required_str,
    security_risk,
)
from .base import Tool, ToolArgumentError

COMMANDS = ("view", "create", "str_replace", "insert", "undo_edit")
# Bigger files are data, not text to edit by hand: the python tool is the way there.
MAX_FILE_BYTES = 10 * 1024 * 1024
# Edits remembered per file for undo_edit.
HISTORY_DEPTH = 20
LISTING_DEPTH = 2
LISTING_MAX_ENTRIES = 1000
BINARY_SNIFF_BYTES = 8192

DESCRIPTION = """\
View, create and edit text files in the workspace (the folder shared with the user's \
notebook): scripts, configuration, SQL, Markdown reports, small CSV or JSON files. Paths \
are relative to the workspace root (absolute paths must lie inside it).
Commands:
- view: a file with line numbers (`view_range` [start, end] shows part of it; end -1 \
means the last line), or a directory's files and folders two levels deep (hidden ones \
left out).
- create: a new file with `file_text` (parent folders are made). It refuses to overwrite \
an existing file: change those with str_replace or insert.
- str_replace: replace `old_str` with `new_str` (empty to delete). `old_str` must occur \
exactly once, character for character including indentation and line breaks; add \
surrounding lines to make it unique.
- insert: insert `new_str` after line `insert_line` (0 puts it at the top).
- undo_edit: put back the file as it was before your last edit of it.
Edits answer with a unified diff. Binary files (images, parquet, Excel) cannot be viewed: \
read those with the python tool.\
"""


class FileEditorError(Exception):
    """An edit or view that cannot be done; its message goes back to the LLM."""


class FileEditorTool(Tool):
    """Carries out ``file_read`` and ``file_edit`` actions inside one workspace."""

    name = "file_editor"

    def __init__(self, workspace: Workspace, settings: AgentSettings) -> None:
        self.workspace = workspace
        self.settings = settings
        # Previous contents per file, newest last; None means "did not exist".
        self._history: dict[Path, list[str | None]] = {}
        self._lock = asyncio.Lock()

    def spec(self) -> dict[str, Any]:
        return function_spec(
            self.name,
            DESCRIPTION,
            {
                "command": {"type": "string", "enum": list(COMMANDS)},
                "path": {
                    "type": "string",
                    "description": "File or directory, relative to the workspace root.",
                },
                "file_text": {
                    "type": "string",
                    "description": "create: the whole content of the new file.",
                },
                "old_str": {
                    "type": "string",
                    "description": "str_replace: the exact text to replace (must be unique).",
                },
                "new_str": {
                    "type": "string",
                    "description": "str_replace: the replacement; insert: the text to insert.",
                },
                "insert_line": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "insert: the line after which new_str goes (0 = top).",
                },
                "view_range": {
                    "type": "array",
                    "items": {"type": "integer"},
                    "minItems": 2,
                    "maxItems": 2,
                    "description": "view: [first line, last line], 1-based; last -1 = end.",
                },
                "security_risk": SECURITY_RISK_PROPERTY,
            },
            ["command", "path", "security_risk"],
        )

    def parse(self, arguments: dict[str, Any], *, tool_call_id: str | None) -> ActionBase:
        command = arguments.get("command")
        if command not in COMMANDS:
            raise ToolArgumentError(
                f"command must be one of {', '.join(COMMANDS)}; got {command!r}"
            )
        path = required_str(arguments, "path")
        risk = security_risk(arguments)
        if command == "view":
            return FileReadEvent(
                path=path,
                view_range=_view_range(arguments.get("view_range")),
                security_risk=risk,
                tool_call_id=tool_call_id,
            )
        common: dict[str, Any] = {"path": path, "security_risk": risk, "tool_call_id": tool_call_id}
        if command == "create":
            text = required_str(arguments, "file_text", allow_empty=True)
            return FileEditEvent(command="create", file_text=text, **common)
        if command == "str_replace":
            old = required_str(arguments, "old_str", allow_empty=True)
            if old == "":
                raise ToolArgumentError("old_str must not be empty")
            new = optional_str(arguments, "new_str") or ""
            if new == old:
                raise ToolArgumentError("new_str is the same as old_str; nothing would change")
            return FileEditEvent(command="str_replace", old_str=old, new_str=new, **common)
        if command == "insert":
            line = optional_int(arguments, "insert_line")
            if line is None:
                raise ToolArgumentError("missing required argument 'insert_line'")
            if line < 0:
                raise ToolArgumentError(f"insert_line must be 0 or more; got {line}")
            new = required_str(arguments, "new_str", allow_empty=True)
            return FileEditEvent(command="insert", insert_line=line, new_str=new, **common)
        return FileEditEvent(command="undo", **common)

    async def execute(self, action: ActionBase) -> EventBase:
        # File I/O runs in a thread so a large file does not stall the event loop.
        if isinstance(action, FileReadEvent):
            return await asyncio.to_thread(self._view, action)
        if isinstance(action, FileEditEvent):
            async with self._lock:
                return await asyncio.to_thread(self._edit, action)
        raise TypeError(f"file_editor cannot execute a {action.kind!r} action")

    # --- view ---------------------------------------------------------------------------

    def _view(self, action: FileReadEvent) -> FileContentEvent:
        shown = action.path
        try:
            path = self.workspace.resolve(action.path)
            shown = self.workspace.relative(path)
            if path.is_dir():
                if action.view_range is not None:
                    raise FileEditorError(f"{shown} is a directory; view_range is for files")
                content, truncated = self._listing(path)
            else:
                content, truncated = self._numbered(path, shown, action.view_range)
        except (WorkspaceError, FileEditorError) as exc:
            return FileContentEvent(path=shown, error=str(exc), tool_call_id=action.tool_call_id)
        return FileContentEvent(
            path=shown, content=content, truncated=truncated, tool_call_id=action.tool_call_id
        )

    def _numbered(self, path: Path, shown: str, view_range: list[int] | None) -> tuple[str, bool]:
        lines = _lines(_read_text(self.workspace, path, shown))
        first, last = 1, len(lines)
        if view_range is not None:
            first, last = view_range
            if not 1 <= first <= max(len(lines), 1) or not lines:
                raise FileEditorError(
                    f"view_range start {first} is out of range: {shown} has {len(lines)} lines"
                )
            if last == -1:
                last = len(lines)
            elif last > len(lines):
                raise FileEditorError(
                    f"view_range end {last} is out of range: {shown} has {len(lines)} lines "
                    "(use -1 for the end)"
                )
        if not lines:
            return "[the file is empty]", False
        budget = self.settings.max_output_chars
        out: list[str] = []
        used = 0
        for number in range(first, last + 1):
            row = f"{number:6}\t{lines[number - 1]}\n"
            if used + len(row) > budget and out:
                out.append(
                    f"[... output cut after line {number - 1} of {len(lines)}; use view_range "
                    f"[{number}, ...] to see more ...]\n"
                )
                return "".join(out), True
            out.append(row)
            used += len(row)
        return "".join(out), False

    def _listing(self, root: Path) -> tuple[str, bool]:
        shown = self.workspace.relative(root)
        entries: list[str] = []
        truncated = False

        def walk(directory: Path, depth: int) -> None:
            nonlocal truncated
            try:
                children = sorted(os.scandir(directory), key=lambda e: e.name)
            except OSError:
                return
            for child in children:
                if child.name.startswith("."):
                    continue
                if len(entries) >= LISTING_MAX_ENTRIES:
                    truncated = True
                    return
                rel = Path(child.path).relative_to(root).as_posix()
                is_dir = child.is_dir(follow_symlinks=False)
                entries.append(rel + "/" if is_dir else rel)
                if is_dir and depth < LISTING_DEPTH:
                    walk(Path(child.path), depth + 1)

        walk(root, 1)
        header = f"Files and folders in {shown}, {LISTING_DEPTH} levels deep, hidden ones left out:"
        body = "\n".join(entries) if entries else "[the directory is empty]"
        if truncated:
            body += f"\n[... listing stopped at {LISTING_MAX_ENTRIES} entries ...]"
        return f"{header}\n{body}\n", truncated

    # --- edits --------------------------------------------------------------------------

    def _edit(self, action: FileEditEvent) -> FileEditResultEvent:
        shown = action.path
        before: str | None
        after: str | None
        try:
            path = self.workspace.resolve(action.path)
            shown = self.workspace.relative(path)
            if action.command == "create":
                before, after = self._create(path, shown, action.file_text or "")
            elif action.command == "str_replace":
                before, after = self._replace(path, shown, action.old_str or "", action.new_str)
            elif action.command == "insert":
                before, after = self._insert(path, shown, action.insert_line, action.new_str)
            else:
                before, after = self._undo(path, shown)
        except (WorkspaceError, FileEditorError) as exc:
            return FileEditResultEvent(
                command=action.command,
                path=shown,
                error=str(exc),
                tool_call_id=action.tool_call_id,
            )
        return FileEditResultEvent(
            command=action.command,
            path=shown,
            diff=unified_diff(before, after, shown),
            tool_call_id=action.tool_call_id,
        )

    def _create(self, path: Path, shown: str, text: str) -> tuple[None, str]:
        if path.is_dir():
            raise FileEditorError(f"{shown} is a directory")
        if path.exists():
            raise FileEditorError(
                f"{shown} already exists; create only makes new files. Change it with "
                "str_replace or insert (view it first)."
            )
        try:
            self.workspace.make_dirs(path.parent)
        except OSError as exc:
            raise FileEditorError(f"cannot make the folder for {shown}: {exc.strerror}") from exc
        self._write(path, shown, text, previous=None, new=True)
        return None, text

    def _replace(self, path: Path, shown: str, old: str, new: str | None) -> tuple[str, str]:
        text = self._read_existing(path, shown)
        starts = _occurrences(text, old)
        if not starts:
            raise FileEditorError(
                f"old_str was not found in {shown}. It must match the file exactly, "
                "including indentation, spaces and line breaks; view the file to copy it."
            )
        if len(starts) > 1:
            lines = ", ".join(str(text.count("\n", 0, start) + 1) for start in starts)
            raise FileEditorError(
                f"old_str occurs {len(starts)} times in {shown} (starting on lines {lines}); "
                "include more surrounding text so it occurs exactly once."
            )
        start = starts[0]
        updated = text[:start] + (new or "") + text[start + len(old) :]
        self._write(path, shown, updated, previous=text)
        return text, updated

    def _insert(self, path: Path, shown: str, line: int | None, new: str | None) -> tuple[str, str]:
        text = self._read_existing(path, shown)
        lines = _lines(text)
        line = line or 0
        if not 0 <= line <= len(lines):
            raise FileEditorError(
                f"insert_line {line} is out of range: {shown} has {len(lines)} lines "
                f"(0 inserts at the top, {len(lines)} at the end)"
            )
        block = new or ""
        if not block.endswith("\n"):
            block += "\n"
        ends = _line_ends(text)
        offset = ends[line - 1] if line else 0
        prefix = text[:offset]
        if prefix and not prefix.endswith("\n"):
            prefix += "\n"  # appending after a last line that had no newline
        updated = prefix + block + text[offset:]
        self._write(path, shown, updated, previous=text)
        return text, updated

    def _undo(self, path: Path, shown: str) -> tuple[str | None, str | None]:
        history = self._history.get(path)
        if not history:
            raise FileEditorError(f"there is no edit of {shown} to undo")
        previous = history[-1]
        current = _read_text(self.workspace, path, shown) if path.is_file() else None
        try:
            if previous is None:
                self.workspace.remove_file(path)
            else:
                _write_bytes(self.workspace, path, previous.encode("utf-8"), new=False)
        except OSError as exc:
            raise FileEditorError(f"cannot restore {shown}: {exc.strerror}") from exc
        history.pop()
        return current, previous

    # --- file access --------------------------------------------------------------------

    def _read_existing(self, path: Path, shown: str) -> str:
        if path.is_dir():
            raise FileEditorError(f"{shown} is a directory")
        if not path.exists():
            raise FileEditorError(f"{shown} does not exist; make it with create")
        return _read_text(self.workspace, path, shown)

    def _write(
        self, path: Path, shown: str, text: str, *, previous: str | None, new: bool = False
    ) -> None:
        try:
            _write_bytes(self.workspace, path, text.encode("utf-8"), new=new)
        except FileExistsError:
            raise FileEditorError(f"{shown} already exists; create only makes new files") from None
        except OSError as exc:
            raise FileEditorError(f"cannot write {shown}: {exc.strerror}") from exc
        history = self._history.setdefault(path, [])
        history.append(previous)
        del history[:-HISTORY_DEPTH]


def unified_diff(before: str | None, after: str | None, shown: str) -> str:
    """A ``git diff``-style unified diff; ``None`` on a side means "no file"."""
    lines = difflib.unified_diff(
        (before or "").splitlines(keepends=True),
        (after or "").splitlines(keepends=True),
        fromfile="/dev/null" if before is None else f"a/{shown}",
        tofile="/dev/null" if after is None else f"b/{shown}",
    )
    out = []
    for line in lines:
        out.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    return "".join(out)


def _write_bytes(workspace: Workspace, path: Path, data: bytes, *, new: bool) -> None:
    """Write ``data`` to ``path`` through ``Workspace.open_file`` (a ``new`` file must not
    exist yet); truncating only after the link checks passed."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if new else 0)
    fd = workspace.open_file(path, flags, 0o666)
    with os.fdopen(fd, "wb") as handle:
        handle.truncate(0)
        handle.write(data)


def _read_text(workspace: Workspace, path: Path, shown: str) -> str:
    if not path.exists():
        raise FileEditorError(f"{shown} does not exist")
    if not path.is_file():
        raise FileEditorError(f"{shown} is not a regular file")
    try:
        fd = workspace.open_file(path)
    except OSError as exc:
        raise FileEditorError(f"cannot read {shown}: {exc.strerror}") from exc
    with os.fdopen(fd, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size > MAX_FILE_BYTES:
            raise FileEditorError(
                f"{shown} is too large for the file editor ({size} bytes, limit "
                f"{MAX_FILE_BYTES}); inspect it with the terminal (head, grep) or python"
            )
        try:
            data = handle.read()
        except OSError as exc:
            raise FileEditorError(f"cannot read {shown}: {exc.strerror}") from exc
    if b"\x00" in data[:BINARY_SNIFF_BYTES]:
        raise FileEditorError(_binary_message(shown))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise FileEditorError(_binary_message(shown)) from None


def _binary_message(shown: str) -> str:
    return (
        f"{shown} is a binary file (or not UTF-8 text); the file editor only handles text. "
        "Read it with the python tool (pandas, PIL, ...) or the terminal (file, xxd)."
    )


def _lines(text: str) -> list[str]:
    """The file's lines without their newlines; a final newline ends the last line."""
    if not text:
        return []
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines


def _line_ends(text: str) -> list[int]:
    """Offset just past each line (after its newline, or the end of text for the last)."""
    ends = []
    position = 0
    while True:
        newline = text.find("\n", position)
        if newline < 0:
            if position < len(text):
                ends.append(len(text))
            return ends
        ends.append(newline + 1)
        position = newline + 1


def _occurrences(text: str, needle: str) -> list[int]:
    """Start offsets of every occurrence, overlapping ones included."""
    starts = []
    position = text.find(needle)
    while position >= 0:
        starts.append(position)
        position = text.find(needle, position + 1)
    return starts


def _view_range(value: Any) -> list[int] | None:
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ToolArgumentError(f"view_range must be a list of two integers; got {value!r}")
    first, last = (as_int(item, "view_range") for item in value)
    if first < 1:
        raise ToolArgumentError(f"view_range starts at line 1; got {first}")
    if last != -1 and last < first:
        raise ToolArgumentError(
            f"view_range end {last} is before its start {first} (use -1 for the end)"
        )
    return [first, last]
