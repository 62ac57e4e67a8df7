"""Turn a conversation into a plain notebook that re-runs top to bottom in its workspace.

Python actions become code cells with their recorded outputs, shell commands ``!cmd`` (simple
one-liners) or ``%%bash`` cells (the rest, and any command run outside the workspace's top
folder: the cell ``cd``s there first, as the agent's persistent shell had), file creations
``%%writefile`` cells, and messages, thoughts and the final answer Markdown cells. Other file
edits become ``%%writefile`` of the whole new text when the conversation made the file, else
a one-line call to a small helper cell. Cells whose recorded run raised carry the
``raises-exception`` tag so a top-to-bottom run goes on past them, as the agent did. What
cannot be re-run (rejected, interrupted or timed-out actions, failed edits) is shown as a
Markdown note with the code. The notebook's metadata names the conversation and version.
"""

from __future__ import annotations

import json
import posixpath
import re
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import nbformat
from nbformat import NotebookNode
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from .._version import __version__
from ..events.schema import (
    ActionBase,
    CommandEvent,
    CommandOutputEvent,
    ConfirmationEvent,
    ErrorEvent,
    EventBase,
    FileEditEvent,
    FileEditResultEvent,
    FinishEvent,
    MessageEvent,
    PythonEvent,
    PythonOutputEvent,
    ThinkEvent,
)
from .normalize import default_workspace_roots

RAISES = "raises-exception"
_ANSWERS = (CommandOutputEvent, PythonOutputEvent, FileEditResultEvent, ErrorEvent)
# Commands made only of these characters mean the same to IPython's ``!`` (no $ or {}
# expansion) and to /bin/sh as to the agent's bash.
_SIMPLE_COMMAND = re.compile(r"[\w\s./:=,+@%&|<>'\"*?-]+")
_SIMPLE_PATH = re.compile(r"[\w./+@%,-]+")
HELPERS = """\
# Helpers for the file edits below (the agent's file_editor made them).
from pathlib import Path as _ConvoPath


def _convo_replace(path, old, new):
    text = _ConvoPath(path).read_text(encoding="utf-8")
    assert text.count(old) == 1, f"the text to replace is not in {path} exactly once"
    _ConvoPath(path).write_text(text.replace(old, new), encoding="utf-8")


def _convo_insert(path, line, block):
    text = _ConvoPath(path).read_text(encoding="utf-8")
    cut = 0
    for _ in range(line):  # to the end of line `line`
        cut = text.find("\\n", cut) + 1 or len(text)
    head = text[:cut] if not text[:cut] or text[:cut].endswith("\\n") else text[:cut] + "\\n"
    block = block if block.endswith("\\n") else block + "\\n"
    _ConvoPath(path).write_text(head + block + text[cut:], encoding="utf-8")


def _convo_write(path, text):
    _ConvoPath(path).parent.mkdir(parents=True, exist_ok=True)
    _ConvoPath(path).write_text(text, encoding="utf-8")
"""


@dataclass
class _Builder:
    roots: list[str]
    cells: list[NotebookNode] = field(default_factory=list)
    observations: dict[int, EventBase] = field(default_factory=dict)
    rejected: set[int] = field(default_factory=set)
    contents: dict[str, list[str]] = field(default_factory=dict)  # path -> text history
    folders: set[str] = field(default_factory=set)
    shell_cwd: str = "."
    needs_helpers: bool = False

    # --- paths ------------------------------------------------------------------------------

    def relative(self, path: str) -> str:
        """A workspace path as the notebook (running in the workspace) should write it."""
        for root in sorted({r.rstrip("/") for r in self.roots if r}, key=len, reverse=True):
            if path == root:
                return "."
            if path.startswith(root + "/"):
                return path[len(root) + 1 :]
        return path

    # --- cells ------------------------------------------------------------------------------

    def markdown(self, text: str) -> None:
        if text.strip():
            self.cells.append(new_markdown_cell(text.strip()))

    def code(
        self,
        source: str,
        outputs: Sequence[NotebookNode] = (),
        *,
        raises: bool = False,
        execution_count: int | None = None,
    ) -> None:
        cell = new_code_cell(source=source, outputs=list(outputs))
        cell.execution_count = execution_count
        if raises:
            cell.metadata["tags"] = [RAISES]
        self.cells.append(cell)

    def note(self, what: str, code: str = "", language: str = "") -> None:
        text = f"*{what}*"
        if code:
            text += f"\n\n```{language}\n{code.rstrip()}\n```"
        self.markdown(text)

    # --- events -----------------------------------------------------------------------------

    def add(self, event: EventBase) -> None:
        if isinstance(event, MessageEvent):
            who = "User" if event.source == "user" else "Agent"
            self.markdown(f"**{who}:** {event.text}")
        elif isinstance(event, ThinkEvent):
            self.markdown(f"*Thought:* {event.thought}")
        elif isinstance(event, FinishEvent):
            self.markdown(f"**Finished:** {event.message}" if event.message else "**Finished.**")
        elif isinstance(event, ActionBase):
            if event.thought:
                self.markdown(f"**Agent:** {event.thought}")
            self.action(event)
        elif isinstance(event, ErrorEvent) and event.cause is None and not event.tool_call_id:
            self.note(f"Error {event.code}: {event.message}")

    def action(self, action: ActionBase) -> None:
        observation = self.observations.get(action.id)
        if action.id in self.rejected:
            self.note(
                f"The user rejected this {action.kind} action; it did not run.",
                _action_text(action),
                _language(action),
            )
        elif isinstance(observation, ErrorEvent):
            self.note(
                f"This {action.kind} action failed ({observation.message}); left out.",
                _action_text(action),
                _language(action),
            )
        elif isinstance(action, PythonEvent):
            self.python(action, observation)
        elif isinstance(action, CommandEvent):
            self.command(action, observation)
        elif isinstance(action, FileEditEvent):
            self.file_edit(action, observation)
        # File views change nothing: no cell.

    def python(self, action: PythonEvent, observation: EventBase | None) -> None:
        if not isinstance(observation, PythonOutputEvent):
            self.note(
                "This Python code never ran (the agent was interrupted).", action.code, "python"
            )
            return
        if observation.timed_out:
            self.note(
                "This Python code timed out and was interrupted; it is not re-run here.",
                action.code,
                "python",
            )
            return
        self.code(
            action.code,
            python_outputs(observation),
            raises=observation.error is not None,
            execution_count=observation.execution_count,
        )

    def command(self, action: CommandEvent, observation: EventBase | None) -> None:
        if not isinstance(observation, CommandOutputEvent):
            self.note("This command never ran (the agent was interrupted).", action.command, "bash")
            return
        if observation.timed_out:
            self.note(
                "This command timed out and was interrupted; it is not re-run here.",
                action.command,
                "bash",
            )
            return
        cwd = self.shell_cwd
        if observation.cwd:
            self.shell_cwd = self.relative(observation.cwd)
        outputs = (
            [new_output("stream", name="stdout", text=observation.output)]
            if (observation.output)
            else []
        )
        command = action.command.strip("\n")
        failed = observation.exit_code not in (0, None)
        if cwd == "." and "\n" not in command and _SIMPLE_COMMAND.fullmatch(command):
            self.code(f"!{command}", outputs)
            return
        prefix = f"cd {shlex.quote(cwd)}\n" if cwd != "." else ""
        self.code(f"%%bash\n{prefix}{command}", outputs, raises=failed)

    def file_edit(self, action: FileEditEvent, observation: EventBase | None) -> None:
        path = self.relative(action.path)
        if not isinstance(observation, FileEditResultEvent):
            self.note(f"This edit of {path} never ran.", _action_text(action))
            return
        if observation.error:
            self.note(f"The agent's {action.command} of {path} failed: {observation.error}")
            return
        history = self.contents.get(path)
        if action.command == "create":
            self.write(path, action.file_text or "")
            self.contents[path] = [action.file_text or ""]
            return
        if action.command == "undo":
            if history is not None and len(history) >= 2:
                history.pop()
                self.write(path, history[-1])
            else:
                self.note(
                    f"The agent undid its last edit of {path}; the notebook cannot repeat "
                    "that (the earlier text is not known).",
                    observation.diff,
                    "diff",
                )
            return
        # Applied to the file as it is when the cell runs, exactly as the file editor does.
        self.needs_helpers = True
        if action.command == "str_replace":
            self.code(
                f"_convo_replace({path!r}, {action.old_str or ''!r}, {action.new_str or ''!r})"
            )
        else:
            self.code(
                f"_convo_insert({path!r}, {action.insert_line or 0}, {action.new_str or ''!r})"
            )
        if history is not None and _apply_edit(action, history) is None:
            self.contents.pop(path, None)

    def write(self, path: str, text: str) -> None:
        """``%%writefile`` when IPython would write the text exactly, else the helper."""
        folder = posixpath.dirname(path)
        simple = _SIMPLE_PATH.fullmatch(path) is not None
        if simple and text.endswith("\n") and (not folder or folder in self.folders):
            self.code(f"%%writefile {path}\n{text}")
            return
        if simple and text.endswith("\n") and folder and not _is_outside(folder):
            self.code(f"!mkdir -p {folder}")
            self.folders.add(folder)
            self.code(f"%%writefile {path}\n{text}")
            return
        self.needs_helpers = True
        self.code(f"_convo_write({path!r}, {text!r})")


def _is_outside(folder: str) -> bool:
    return folder.startswith("/") or ".." in PurePosixPath(folder).parts


def _apply_edit(action: FileEditEvent, history: list[str]) -> str | None:
    """The file's text after ``action`` (history: texts so far); None if it cannot tell."""
    text = history[-1]
    if action.command == "str_replace":
        old = action.old_str or ""
        if not old or text.count(old) != 1:
            return None
        history.append(text.replace(old, action.new_str or ""))
    elif action.command == "insert":
        line = action.insert_line or 0
        cut = 0
        for _ in range(line):
            cut = text.find("\n", cut) + 1 or len(text)
        head = text[:cut]
        if head and not head.endswith("\n"):
            head += "\n"
        block = action.new_str or ""
        block = block if block.endswith("\n") else block + "\n"
        history.append(head + block + text[cut:])
    elif action.command == "undo":
        if len(history) < 2:
            return None
        history.pop()
    else:
        return None
    return history[-1]


def _action_text(action: ActionBase) -> str:
    if isinstance(action, PythonEvent):
        return action.code
    if isinstance(action, CommandEvent):
        return action.command
    if isinstance(action, FileEditEvent):
        return action.file_text or action.new_str or ""
    return ""


def _language(action: ActionBase) -> str:
    return {"python": "python", "command": "bash"}.get(action.kind, "")


def python_outputs(observation: PythonOutputEvent) -> list[NotebookNode]:
    """The recorded outputs as nbformat outputs (streams, displays, result, error)."""
    outputs: list[NotebookNode] = []
    if observation.stdout:
        outputs.append(new_output("stream", name="stdout", text=observation.stdout))
    if observation.stderr:
        outputs.append(new_output("stream", name="stderr", text=observation.stderr))
    for bundle in observation.display_data:
        outputs.append(new_output("display_data", data=_bundle(bundle), metadata={}))
    if observation.result:
        outputs.append(
            new_output(
                "execute_result",
                data=_bundle(observation.result),
                metadata={},
                execution_count=observation.execution_count,
            )
        )
    if observation.error is not None:
        outputs.append(
            new_output(
                "error",
                ename=observation.error.ename,
                evalue=observation.error.evalue,
                traceback=list(observation.error.traceback),
            )
        )
    return outputs


def _bundle(bundle: dict[str, Any]) -> dict[str, Any]:
    """A MIME bundle as nbformat wants it: text as strings, JSON types as objects."""
    data: dict[str, Any] = {}
    for mime, value in bundle.items():
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            value = "".join(value)
        if not isinstance(value, str) and not mime.endswith("json"):
            value = json.dumps(value)
        data[mime] = value
    return data


def conversation_notebook(
    events: Iterable[EventBase],
    *,
    conversation_id: str | None = None,
    title: str | None = None,
    workspace_roots: Sequence[str] = (),
) -> NotebookNode:
    """The notebook for a conversation's events (see the module doc)."""
    ordered = list(events)
    roots = list(workspace_roots)
    for event in ordered:
        if isinstance(event, CommandOutputEvent) and event.cwd:
            roots.extend(default_workspace_roots(event.cwd))
    builder = _Builder(roots=roots)
    for event in ordered:
        if event.cause is None:
            continue
        if isinstance(event, ConfirmationEvent) and not event.confirmed:
            builder.rejected.add(event.cause)
        elif event.cause not in builder.observations and isinstance(event, _ANSWERS):
            builder.observations[event.cause] = event
    header = f"# {title}" if title else "# Conversation"
    source = f" `{conversation_id}`" if conversation_id else ""
    builder.markdown(
        f"{header}\n\nExported from the jupyter-convo conversation{source} (jupyter-convo "
        f"{__version__}). Run it from the conversation's workspace folder: its cells repeat "
        "what the agent did there, in order."
    )
    start = len(builder.cells)
    for event in ordered:
        builder.add(event)
    if builder.needs_helpers:
        builder.cells.insert(start, new_code_cell(source=HELPERS))
    notebook = new_notebook(cells=builder.cells)
    notebook.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
    }
    notebook.metadata["language_info"] = {"name": "python"}
    notebook.metadata["jupyter_convo"] = {
        "conversation_id": conversation_id,
        "title": title,
        "jupyter_convo_version": __version__,
    }
    nbformat.validate(notebook)
    return notebook


def notebook_json(notebook: NotebookNode) -> str:
    """The ``.ipynb`` text."""
    return str(nbformat.writes(notebook)) + "\n"


__all__ = ["RAISES", "conversation_notebook", "notebook_json", "python_outputs"]
