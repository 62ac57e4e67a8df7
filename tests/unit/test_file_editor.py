"""The file_editor tool on real files in a temporary workspace: every command, every
refusal, and every way out of the workspace we know of."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from jupyter_convo.agent.settings import AgentSettings
from jupyter_convo.agent.tools import ToolArgumentError
from jupyter_convo.agent.tools.file_editor import MAX_FILE_BYTES, FileEditorTool
from jupyter_convo.agent.workspace import Workspace
from jupyter_convo.events.schema import (
    FileContentEvent,
    FileEditEvent,
    FileEditResultEvent,
    FileReadEvent,
)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "workspace"
    path.mkdir()
    return path


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A file next to the workspace that no command may read or change."""
    path = tmp_path / "secret.txt"
    path.write_text("do not touch\n")
    return path


@pytest.fixture
def editor(root: Path) -> FileEditorTool:
    return FileEditorTool(Workspace(root), AgentSettings(max_output_chars=1000))


def text_of(path: Path) -> str:
    return path.read_text()


async def view(editor: FileEditorTool, path: str, **args: Any) -> FileContentEvent:
    action = editor.parse({"command": "view", "path": path, **args}, tool_call_id="call-1")
    result = await editor.execute(action)
    assert isinstance(result, FileContentEvent)
    assert result.tool_call_id == "call-1"
    return result


async def edit(editor: FileEditorTool, command: str, path: str, **args: Any) -> FileEditResultEvent:
    action = editor.parse({"command": command, "path": path, **args}, tool_call_id="call-2")
    result = await editor.execute(action)
    assert isinstance(result, FileEditResultEvent)
    assert result.tool_call_id == "call-2"
    return result


# --- parse ----------------------------------------------------------------------------


def test_parse_builds_the_action_events(editor: FileEditorTool) -> None:
    read = editor.parse(
        {"command": "view", "path": "a.py", "view_range": [2, -1], "security_risk": "low"},
        tool_call_id="c",
    )
    assert isinstance(read, FileReadEvent)
    assert (read.path, read.view_range, read.security_risk) == ("a.py", [2, -1], "low")
    create = editor.parse(
        {"command": "create", "path": "a.py", "file_text": "", "security_risk": "MEDIUM"},
        tool_call_id="c",
    )
    assert isinstance(create, FileEditEvent)
    assert (create.command, create.file_text, create.security_risk) == ("create", "", "medium")
    undo = editor.parse({"command": "undo_edit", "path": "a.py"}, tool_call_id="c")
    assert isinstance(undo, FileEditEvent)
    assert (undo.command, undo.security_risk) == ("undo", "unknown")
    insert = editor.parse(
        {"command": "insert", "path": "a.py", "insert_line": "3", "new_str": "x"},
        tool_call_id="c",
    )
    assert isinstance(insert, FileEditEvent)
    assert insert.insert_line == 3
    replace = editor.parse(
        {"command": "str_replace", "path": "a", "old_str": "x"}, tool_call_id="c"
    )
    assert isinstance(replace, FileEditEvent)
    assert replace.new_str == ""


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"path": "a"}, "command must be one of"),
        ({"command": "delete", "path": "a"}, "command must be one of"),
        ({"command": "view"}, "missing required argument 'path'"),
        ({"command": "view", "path": "  "}, "path must not be empty"),
        ({"command": "view", "path": 3}, "path must be a string"),
        ({"command": "view", "path": "a", "view_range": [1]}, "two integers"),
        ({"command": "view", "path": "a", "view_range": [0, 3]}, "starts at line 1"),
        ({"command": "view", "path": "a", "view_range": [5, 2]}, "before its start"),
        ({"command": "view", "path": "a", "view_range": ["x", 2]}, "must be an integer"),
        ({"command": "create", "path": "a"}, "missing required argument 'file_text'"),
        ({"command": "str_replace", "path": "a"}, "missing required argument 'old_str'"),
        ({"command": "str_replace", "path": "a", "old_str": ""}, "old_str must not be empty"),
        ({"command": "str_replace", "path": "a", "old_str": "x", "new_str": "x"}, "the same"),
        ({"command": "insert", "path": "a", "new_str": "x"}, "'insert_line'"),
        ({"command": "insert", "path": "a", "insert_line": -1, "new_str": "x"}, "0 or more"),
        ({"command": "insert", "path": "a", "insert_line": True, "new_str": "x"}, "integer"),
        ({"command": "insert", "path": "a", "insert_line": 1}, "'new_str'"),
        ({"command": "view", "path": "a", "security_risk": "extreme"}, "security_risk"),
    ],
)
def test_parse_refuses_bad_arguments(
    editor: FileEditorTool, arguments: dict[str, Any], message: str
) -> None:
    with pytest.raises(ToolArgumentError, match=message):
        editor.parse(arguments, tool_call_id=None)


def test_spec_is_a_function_tool_with_a_risk_argument(editor: FileEditorTool) -> None:
    spec = editor.spec()
    assert spec["type"] == "function"
    function = spec["function"]
    assert function["name"] == "file_editor"
    parameters = function["parameters"]
    assert parameters["required"] == ["command", "path", "security_risk"]
    assert parameters["properties"]["command"]["enum"] == [
        "view",
        "create",
        "str_replace",
        "insert",
        "undo_edit",
    ]
    assert parameters["properties"]["security_risk"]["enum"] == ["low", "medium", "high"]


# --- view -----------------------------------------------------------------------------


async def test_view_numbers_lines(editor: FileEditorTool, root: Path) -> None:
    (root / "a.py").write_text("one\ntwo\nthree\n")
    result = await view(editor, "a.py")
    assert result.error is None
    assert result.path == "a.py"
    assert result.content == "     1\tone\n     2\ttwo\n     3\tthree\n"
    assert not result.truncated


async def test_view_range(editor: FileEditorTool, root: Path) -> None:
    (root / "a.py").write_text("one\ntwo\nthree\nfour")
    assert (await view(editor, "a.py", view_range=[2, 3])).content == "     2\ttwo\n     3\tthree\n"
    assert (await view(editor, "a.py", view_range=[3, -1])).content == (
        "     3\tthree\n     4\tfour\n"
    )


async def test_view_range_out_of_the_file(editor: FileEditorTool, root: Path) -> None:
    (root / "a.py").write_text("one\ntwo\n")
    start = await view(editor, "a.py", view_range=[3, -1])
    assert start.error is not None
    assert "start 3 is out of range" in start.error
    assert "2 lines" in start.error
    end = await view(editor, "a.py", view_range=[1, 9])
    assert end.error is not None
    assert "end 9 is out of range" in end.error


async def test_view_empty_file(editor: FileEditorTool, root: Path) -> None:
    (root / "empty.txt").write_text("")
    result = await view(editor, "empty.txt")
    assert result.error is None
    assert result.content == "[the file is empty]"


async def test_view_directory_two_levels_without_hidden(editor: FileEditorTool, root: Path) -> None:
    (root / "data" / "raw" / "deep").mkdir(parents=True)
    (root / "data" / "raw" / "deep" / "too_deep.csv").write_text("x")
    (root / "data" / "raw" / "sales.csv").write_text("x")
    (root / "data" / "clean.csv").write_text("x")
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text("x")
    (root / "data" / ".cache").write_text("x")
    (root / "notebook.ipynb").write_text("{}")
    result = await view(editor, ".")
    assert result.error is None
    lines = result.content.splitlines()
    assert lines[0].startswith("Files and folders in .")
    assert lines[1:] == ["data/", "data/clean.csv", "data/raw/", "notebook.ipynb"]
    sub = await view(editor, "data")
    assert sub.content.splitlines()[1:] == ["clean.csv", "raw/", "raw/deep/", "raw/sales.csv"]


async def test_view_directory_refuses_view_range(editor: FileEditorTool, root: Path) -> None:
    (root / "data").mkdir()
    result = await view(editor, "data", view_range=[1, 2])
    assert result.error is not None
    assert "is a directory" in result.error


async def test_view_missing_file(editor: FileEditorTool) -> None:
    result = await view(editor, "nope.txt")
    assert result.error == "nope.txt does not exist"
    assert result.content == ""


async def test_view_refuses_binary_files(editor: FileEditorTool, root: Path) -> None:
    (root / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    (root / "latin1.txt").write_bytes("café".encode("latin-1"))
    for name in ("image.png", "latin1.txt"):
        result = await view(editor, name)
        assert result.error is not None
        assert "binary file" in result.error
        assert "python tool" in result.error


async def test_view_truncates_big_files_by_whole_lines(editor: FileEditorTool, root: Path) -> None:
    (root / "big.txt").write_text("".join(f"line {n}\n" for n in range(1, 2001)))
    result = await view(editor, "big.txt")
    assert result.truncated
    assert result.content.startswith("     1\tline 1\n")
    assert len(result.content) < 1200
    last = result.content.splitlines()[-2]
    shown = int(last.split("\t")[0])
    assert f"output cut after line {shown} of 2000" in result.content
    assert f"view_range [{shown + 1}, ...]" in result.content


async def test_view_refuses_files_too_large(editor: FileEditorTool, root: Path) -> None:
    with (root / "huge.csv").open("wb") as handle:
        handle.truncate(MAX_FILE_BYTES + 1)
    result = await view(editor, "huge.csv")
    assert result.error is not None
    assert "too large" in result.error


# --- create ---------------------------------------------------------------------------


async def test_create_makes_parents_and_reports_a_diff(editor: FileEditorTool, root: Path) -> None:
    result = await edit(editor, "create", "src/etl/clean.py", file_text="import pandas\n")
    assert result.error is None
    assert result.command == "create"
    assert result.path == "src/etl/clean.py"
    assert (root / "src/etl/clean.py").read_text() == "import pandas\n"
    assert result.diff.splitlines() == [
        "--- /dev/null",
        "+++ b/src/etl/clean.py",
        "@@ -0,0 +1 @@",
        "+import pandas",
    ]


async def test_create_refuses_an_existing_file(editor: FileEditorTool, root: Path) -> None:
    (root / "a.py").write_text("keep\n")
    result = await edit(editor, "create", "a.py", file_text="new\n")
    assert result.error is not None
    assert "already exists" in result.error
    assert "str_replace" in result.error
    assert (root / "a.py").read_text() == "keep\n"
    assert result.diff == ""


async def test_create_refuses_a_directory(editor: FileEditorTool, root: Path) -> None:
    (root / "data").mkdir()
    result = await edit(editor, "create", "data", file_text="x")
    assert result.error == "data is a directory"


async def test_create_under_a_file_fails_cleanly(editor: FileEditorTool, root: Path) -> None:
    (root / "a.txt").write_text("x")
    result = await edit(editor, "create", "a.txt/b.txt", file_text="x")
    assert result.error is not None
    assert "cannot make the folder" in result.error


async def test_create_marks_a_missing_final_newline_in_the_diff(editor: FileEditorTool) -> None:
    result = await edit(editor, "create", "a.txt", file_text="no newline")
    assert result.diff.endswith("+no newline\n\\ No newline at end of file\n")


# --- str_replace ----------------------------------------------------------------------


async def test_str_replace_once(editor: FileEditorTool, root: Path) -> None:
    (root / "a.py").write_text("x = 1\ny = 2\nz = 3\n")
    result = await edit(editor, "str_replace", "a.py", old_str="y = 2", new_str="y = 20")
    assert result.error is None
    assert (root / "a.py").read_text() == "x = 1\ny = 20\nz = 3\n"
    assert "--- a/a.py\n+++ b/a.py\n" in result.diff
    assert "-y = 2\n+y = 20\n" in result.diff


async def test_str_replace_with_empty_new_str_deletes(editor: FileEditorTool, root: Path) -> None:
    (root / "a.py").write_text("keep\ndrop me\nkeep too\n")
    result = await edit(editor, "str_replace", "a.py", old_str="drop me\n", new_str="")
    assert result.error is None
    assert (root / "a.py").read_text() == "keep\nkeep too\n"


async def test_str_replace_not_found(editor: FileEditorTool, root: Path) -> None:
    (root / "a.py").write_text("x = 1\n")
    result = await edit(editor, "str_replace", "a.py", old_str="x=1", new_str="x = 2")
    assert result.error is not None
    assert "not found in a.py" in result.error
    assert (root / "a.py").read_text() == "x = 1\n"


async def test_str_replace_ambiguous_lists_the_lines(editor: FileEditorTool, root: Path) -> None:
    (root / "a.py").write_text("total = 0\nprint(total)\nx = 1\nprint(total)\n")
    result = await edit(editor, "str_replace", "a.py", old_str="print(total)", new_str="pass")
    assert result.error is not None
    assert "occurs 2 times" in result.error
    assert "lines 2, 4" in result.error
    assert (root / "a.py").read_text() == "total = 0\nprint(total)\nx = 1\nprint(total)\n"


async def test_str_replace_counts_overlapping_matches(editor: FileEditorTool, root: Path) -> None:
    (root / "a.txt").write_text("aaa\n")
    result = await edit(editor, "str_replace", "a.txt", old_str="aa", new_str="b")
    assert result.error is not None
    assert "occurs 2 times" in result.error


async def test_str_replace_missing_file_and_directory(editor: FileEditorTool, root: Path) -> None:
    missing = await edit(editor, "str_replace", "nope.py", old_str="a", new_str="b")
    assert missing.error == "nope.py does not exist; make it with create"
    (root / "data").mkdir()
    directory = await edit(editor, "str_replace", "data", old_str="a", new_str="b")
    assert directory.error == "data is a directory"


async def test_str_replace_refuses_binary_files(editor: FileEditorTool, root: Path) -> None:
    (root / "blob.bin").write_bytes(b"ab\x00cd")
    result = await edit(editor, "str_replace", "blob.bin", old_str="ab", new_str="x")
    assert result.error is not None
    assert "binary file" in result.error
    assert (root / "blob.bin").read_bytes() == b"ab\x00cd"


# --- insert ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (0, "new\none\ntwo\n"),
        (1, "one\nnew\ntwo\n"),
        (2, "one\ntwo\nnew\n"),
    ],
)
async def test_insert(editor: FileEditorTool, root: Path, line: int, expected: str) -> None:
    (root / "a.txt").write_text("one\ntwo\n")
    result = await edit(editor, "insert", "a.txt", insert_line=line, new_str="new")
    assert result.error is None
    assert (root / "a.txt").read_text() == expected
    assert "+new\n" in result.diff


async def test_insert_after_a_last_line_without_newline(editor: FileEditorTool, root: Path) -> None:
    (root / "a.txt").write_text("one\ntwo")
    result = await edit(editor, "insert", "a.txt", insert_line=2, new_str="three\nfour\n")
    assert result.error is None
    assert (root / "a.txt").read_text() == "one\ntwo\nthree\nfour\n"


async def test_insert_into_an_empty_file(editor: FileEditorTool, root: Path) -> None:
    (root / "a.txt").write_text("")
    result = await edit(editor, "insert", "a.txt", insert_line=0, new_str="first")
    assert result.error is None
    assert (root / "a.txt").read_text() == "first\n"


async def test_insert_out_of_range(editor: FileEditorTool, root: Path) -> None:
    (root / "a.txt").write_text("one\ntwo\n")
    result = await edit(editor, "insert", "a.txt", insert_line=3, new_str="x")
    assert result.error is not None
    assert "insert_line 3 is out of range: a.txt has 2 lines" in result.error
    assert (root / "a.txt").read_text() == "one\ntwo\n"


async def test_insert_missing_file(editor: FileEditorTool) -> None:
    result = await edit(editor, "insert", "nope.txt", insert_line=0, new_str="x")
    assert result.error == "nope.txt does not exist; make it with create"


# --- undo_edit ------------------------------------------------------------------------


async def test_undo_steps_back_through_edits(editor: FileEditorTool, root: Path) -> None:
    await edit(editor, "create", "a.txt", file_text="v1\n")
    await edit(editor, "str_replace", "a.txt", old_str="v1", new_str="v2")
    await edit(editor, "insert", "a.txt", insert_line=1, new_str="v3")
    assert (root / "a.txt").read_text() == "v2\nv3\n"

    first = await edit(editor, "undo_edit", "a.txt")
    assert first.error is None
    assert first.command == "undo"
    assert (root / "a.txt").read_text() == "v2\n"
    assert "-v3\n" in first.diff

    await edit(editor, "undo_edit", "a.txt")
    assert (root / "a.txt").read_text() == "v1\n"

    created = await edit(editor, "undo_edit", "a.txt")
    assert created.error is None
    assert not (root / "a.txt").exists()
    assert "+++ /dev/null" in created.diff

    nothing = await edit(editor, "undo_edit", "a.txt")
    assert nothing.error == "there is no edit of a.txt to undo"


async def test_undo_with_no_history(editor: FileEditorTool, root: Path) -> None:
    (root / "a.txt").write_text("untouched\n")
    result = await edit(editor, "undo_edit", "a.txt")
    assert result.error == "there is no edit of a.txt to undo"
    assert (root / "a.txt").read_text() == "untouched\n"


async def test_failed_edits_leave_no_history(editor: FileEditorTool, root: Path) -> None:
    (root / "a.txt").write_text("one\n")
    await edit(editor, "str_replace", "a.txt", old_str="missing", new_str="x")
    result = await edit(editor, "undo_edit", "a.txt")
    assert result.error == "there is no edit of a.txt to undo"


# --- confinement ----------------------------------------------------------------------


ESCAPES = ["../secret.txt", "sub/../../secret.txt"]


@pytest.mark.parametrize("path", ESCAPES)
async def test_relative_escapes_are_refused(
    editor: FileEditorTool, root: Path, outside: Path, path: str
) -> None:
    (root / "sub").mkdir()
    assert "outside the workspace" in ((await view(editor, path)).error or "")
    replaced = await edit(editor, "str_replace", path, old_str="do not", new_str="did")
    assert "outside the workspace" in (replaced.error or "")
    inserted = await edit(editor, "insert", path, insert_line=0, new_str="x")
    assert "outside the workspace" in (inserted.error or "")
    assert text_of(outside) == "do not touch\n"
    created = await edit(editor, "create", "../new.txt", file_text="x")
    assert "outside the workspace" in (created.error or "")
    assert not (root.parent / "new.txt").exists()


async def test_absolute_paths_must_be_inside(
    editor: FileEditorTool, root: Path, outside: Path
) -> None:
    assert "outside the workspace" in ((await view(editor, str(outside))).error or "")
    assert "outside the workspace" in ((await view(editor, "/etc/passwd")).error or "")
    created = await edit(editor, "create", str(root.parent / "new.txt"), file_text="x")
    assert "outside the workspace" in (created.error or "")
    assert not (root.parent / "new.txt").exists()
    inside = await edit(editor, "create", str(root / "in.txt"), file_text="ok\n")
    assert inside.error is None
    assert inside.path == "in.txt"
    assert (root / "in.txt").read_text() == "ok\n"


async def test_symlinks_pointing_outside_are_refused(
    editor: FileEditorTool, root: Path, outside: Path
) -> None:
    os.symlink(outside, root / "link.txt")
    os.symlink(outside.parent, root / "linkdir")
    assert "outside the workspace" in ((await view(editor, "link.txt")).error or "")
    replaced = await edit(editor, "str_replace", "link.txt", old_str="do not", new_str="did")
    assert "outside the workspace" in (replaced.error or "")
    created = await edit(editor, "create", "linkdir/new.txt", file_text="x")
    assert "outside the workspace" in (created.error or "")
    assert text_of(outside) == "do not touch\n"
    assert not (outside.parent / "new.txt").exists()
    listing = await view(editor, ".")
    assert "linkdir/" not in listing.content  # listed as a name, never walked
    assert "secret.txt" not in listing.content


async def test_symlinks_inside_are_followed(editor: FileEditorTool, root: Path) -> None:
    (root / "real.txt").write_text("one\n")
    os.symlink(root / "real.txt", root / "alias.txt")
    result = await edit(editor, "str_replace", "alias.txt", old_str="one", new_str="two")
    assert result.error is None
    assert result.path == "real.txt"
    assert (root / "real.txt").read_text() == "two\n"


async def test_nul_byte_in_path(editor: FileEditorTool) -> None:
    result = await view(editor, "a\x00b")
    assert result.error == "path contains a NUL byte"


async def test_hard_links_are_refused(editor: FileEditorTool, root: Path, outside: Path) -> None:
    """A second name for a file outside (planted by anyone who could reach both) reads
    and writes the outside data: every command refuses such a file."""
    os.link(outside, root / "linked.txt")
    viewed = await view(editor, "linked.txt")
    assert "hard links" in (viewed.error or "")
    assert "do not touch" not in viewed.content
    replaced = await edit(editor, "str_replace", "linked.txt", old_str="do not", new_str="did")
    assert "hard links" in (replaced.error or "")
    inserted = await edit(editor, "insert", "linked.txt", insert_line=0, new_str="x")
    assert "hard links" in (inserted.error or "")
    assert text_of(outside) == "do not touch\n"
    # Files with one name are edited as before.
    created = await edit(editor, "create", "plain.txt", file_text="one\n")
    assert created.error is None
    changed = await edit(editor, "str_replace", "plain.txt", old_str="one", new_str="two")
    assert changed.error is None and text_of(root / "plain.txt") == "two\n"


class SwappingWorkspace(Workspace):
    """Replaces ``target`` with a symlink to ``destination`` right after the next
    ``resolve``: what a process racing the editor could do between check and use."""

    def __init__(self, root: Path, target: Path, destination: Path) -> None:
        super().__init__(root)
        self.target = target
        self.destination = destination
        self.swapped = False

    def resolve(self, path: str | os.PathLike[str], *, must_exist: bool = False) -> Path:
        resolved = super().resolve(path, must_exist=must_exist)
        if not self.swapped:
            self.swapped = True
            if self.target.is_dir():
                for child in self.target.iterdir():
                    child.unlink()
                self.target.rmdir()
            else:
                self.target.unlink(missing_ok=True)
            os.symlink(self.destination, self.target)
        return resolved


@pytest.mark.parametrize("command", ["view", "str_replace", "create"])
async def test_a_symlink_swapped_in_after_the_check_is_refused(
    root: Path, outside: Path, command: str
) -> None:
    (root / "sub").mkdir()
    (root / "sub" / "secret.txt").write_text("do not touch\n")
    workspace = SwappingWorkspace(root, root / "sub", outside.parent)
    tool = FileEditorTool(workspace, AgentSettings(max_output_chars=1000))
    if command == "view":
        result: FileContentEvent | FileEditResultEvent = await view(tool, "sub/secret.txt")
        assert "do not touch" not in result.content
    elif command == "str_replace":
        result = await edit(tool, command, "sub/secret.txt", old_str="do not", new_str="did")
    else:
        result = await edit(tool, command, "sub/new.txt", file_text="x")
    assert workspace.swapped
    assert "symbolic link" in (result.error or "")
    assert text_of(outside) == "do not touch\n"
    assert not (outside.parent / "new.txt").exists()
