"""Notebook export: cells for what the agent did, and the notebook re-runs in a fresh kernel."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from jupyter_convo import __version__
from jupyter_convo.events.schema import (
    CommandEvent,
    CommandOutputEvent,
    ConfirmationEvent,
    EventBase,
    FileEditEvent,
    FileEditResultEvent,
    FinishEvent,
    MessageEvent,
    PythonEvent,
    PythonOutputEvent,
)
from jupyter_convo.share.notebook import RAISES, conversation_notebook, notebook_json
from jupyter_convo.share.source import load_source

pytestmark = pytest.mark.integration

RECORDED_ROOT = "/tmp/old-run/conversations/c1/workspace"


def run_notebook(notebook: nbformat.NotebookNode, workspace: Path) -> None:
    """Execute top to bottom in a fresh kernel whose working directory is ``workspace``."""
    workspace.mkdir(parents=True, exist_ok=True)
    client = NotebookClient(
        notebook, timeout=60, kernel_name="python3", resources={"metadata": {"path": workspace}}
    )
    client.execute()


def sources(notebook: nbformat.NotebookNode, kind: str = "code") -> list[str]:
    return [cell.source for cell in notebook.cells if cell.cell_type == kind]


def test_the_example_becomes_a_notebook_that_reruns_to_the_same_files(
    example_dir: Path, tmp_path: Path
) -> None:
    source = load_source(example_dir)
    notebook = conversation_notebook(
        source.events,
        conversation_id=source.conversation_id,
        title=source.title,
        workspace_roots=source.workspace_roots,
    )
    text = notebook_json(notebook)
    notebook = nbformat.reads(text, as_version=4)
    nbformat.validate(notebook)
    assert notebook.metadata["jupyter_convo"] == {
        "conversation_id": "example-sales-summary",
        "title": "Example: monthly totals from sales.csv",
        "jupyter_convo_version": __version__,
    }
    code = sources(notebook)
    assert any(s.startswith("%%writefile sales.csv\n") for s in code)
    assert "!head -n 3 sales.csv && tail -n 1 sales.csv" in code
    assert "!cat summary.txt" in code
    assert any("_convo_insert('summary.txt', 3," in s for s in code)
    markdown = sources(notebook, "markdown")
    assert markdown[0].startswith("# Example: monthly totals from sales.csv")
    assert any(s.startswith("**User:** Create a small sales.csv") for s in markdown)
    assert any(s.startswith("**Finished:** Monthly totals") for s in markdown)
    failing = [c for c in notebook.cells if RAISES in c.metadata.get("tags", [])]
    assert len(failing) == 1 and 'float(row["amount"])' in failing[0].source
    assert failing[0].outputs[-1]["ename"] == "ValueError"

    workspace = tmp_path / "workspace"
    run_notebook(notebook, workspace)
    for name in ("sales.csv", "summary.txt"):
        assert (workspace / name).read_bytes() == (example_dir / "workspace" / name).read_bytes()
    cat = [c for c in notebook.cells if c.cell_type == "code" and c.source == "!cat summary.txt"]
    assert (
        cat[-1]
        .outputs[0]["text"]
        .replace("\r\n", "\n")
        .endswith("# skipped: 2024-02-11 (amount n/a)\n")
    )


def conversation() -> list[EventBase]:
    """Hand-made events covering every kind of cell."""
    events: list[EventBase] = []

    def add(event: EventBase) -> EventBase:
        stored = event.model_copy(update={"id": len(events)})
        events.append(stored)
        return stored

    def act(action: EventBase, observation: EventBase | None) -> EventBase:
        logged = add(action)
        if observation is not None:
            add(observation.model_copy(update={"cause": logged.id}))
        return logged

    root = RECORDED_ROOT
    add(MessageEvent(source="user", text="Organise the data folder."))
    act(
        CommandEvent(command="mkdir -p data && cd data", thought="Make a folder and go there."),
        CommandOutputEvent(exit_code=0, cwd=f"{root}/data"),
    )
    act(
        CommandEvent(command="echo hello > greeting.txt"),
        CommandOutputEvent(exit_code=0, cwd=f"{root}/data"),
    )
    act(CommandEvent(command="cd .."), CommandOutputEvent(exit_code=0, cwd=root))
    act(
        CommandEvent(command='echo "$HOME" > /dev/null; echo {braces}'),
        CommandOutputEvent(exit_code=0, output="{braces}\n", cwd=root),
    )
    act(CommandEvent(command="ls missing-file"), CommandOutputEvent(exit_code=2, cwd=root))
    act(
        CommandEvent(command="false"), CommandOutputEvent(exit_code=1, cwd=root)
    )  # simple: `!false` does not raise
    act(
        FileEditEvent(command="create", path=f"{root}/notes/todo.md", file_text="- a\n- b\n"),
        FileEditResultEvent(command="create", path="notes/todo.md", diff="+- a\n+- b\n"),
    )
    act(
        FileEditEvent(command="str_replace", path="notes/todo.md", old_str="- b", new_str="- c"),
        FileEditResultEvent(command="str_replace", path="notes/todo.md", diff="-- b\n+- c\n"),
    )
    act(
        FileEditEvent(command="undo", path="notes/todo.md"),
        FileEditResultEvent(command="undo", path="notes/todo.md", diff="-- c\n+- b\n"),
    )
    act(
        FileEditEvent(command="create", path="no-newline.txt", file_text="last line"),
        FileEditResultEvent(command="create", path="no-newline.txt", diff="+last line\n"),
    )
    act(
        FileEditEvent(command="create", path="data/greeting.txt", file_text="x\n"),
        FileEditResultEvent(command="create", path="data/greeting.txt", error="already exists"),
    )
    act(
        FileEditEvent(
            command="str_replace", path="data/greeting.txt", old_str="hello", new_str="hi"
        ),
        FileEditResultEvent(command="str_replace", path="data/greeting.txt", diff="-hello\n+hi\n"),
    )
    act(
        PythonEvent(code="value = 6 * 7\nvalue"),
        PythonOutputEvent(result={"text/plain": "42"}, execution_count=1),
    )
    rejected = act(
        CommandEvent(command="rm -rf data", security_risk="high", confirmation="awaiting"), None
    )
    add(ConfirmationEvent(cause=rejected.id, confirmed=False, reason="keep it"))
    act(
        PythonEvent(code="while True: pass"),
        PythonOutputEvent(timed_out=True, execution_count=2),
    )
    act(FinishEvent(message="Done."), None)
    return events


def test_each_kind_of_step_becomes_the_right_cell(tmp_path: Path) -> None:
    notebook = conversation_notebook(
        conversation(), conversation_id="c1", workspace_roots=[RECORDED_ROOT]
    )
    code = sources(notebook)
    markdown = sources(notebook, "markdown")
    assert code[0].startswith("# Helpers for the file edits below")
    assert "!mkdir -p data && cd data" in code
    assert "%%bash\ncd data\necho hello > greeting.txt" in code  # the shell's cwd is kept
    assert "%%bash\ncd data\ncd .." in code
    assert '%%bash\necho "$HOME" > /dev/null; echo {braces}' in code  # no IPython expansion
    assert "!ls missing-file" in code and "!false" in code
    assert "!mkdir -p notes" in code
    assert "%%writefile notes/todo.md\n- a\n- b\n" in code
    assert "_convo_replace('notes/todo.md', '- b', '- c')" in code
    assert code.count("%%writefile notes/todo.md\n- a\n- b\n") == 2  # the undo
    assert "_convo_write('no-newline.txt', 'last line')" in code
    assert "_convo_replace('data/greeting.txt', 'hello', 'hi')" in code
    assert "value = 6 * 7\nvalue" in code
    assert any("failed: already exists" in m for m in markdown)
    assert any("rejected this command" in m and "rm -rf data" in m for m in markdown)
    assert any("timed out" in m and "while True: pass" in m for m in markdown)
    assert markdown[-1] == "**Finished:** Done."
    assert not any("rm -rf" in s for s in code) and not any("while True" in s for s in code)

    workspace = tmp_path / "workspace"
    run_notebook(notebook, workspace)
    assert (workspace / "data" / "greeting.txt").read_text() == "hi\n"
    assert (workspace / "notes" / "todo.md").read_text() == "- a\n- b\n"
    assert (workspace / "no-newline.txt").read_text() == "last line"
    result = next(c for c in notebook.cells if c.source == "value = 6 * 7\nvalue")
    assert result.outputs[0]["data"]["text/plain"] == "42"
