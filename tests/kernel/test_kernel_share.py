"""``%convo import|replay|export|notebook`` in IPython's test shell against a real server."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import nbformat
import pytest

from jupyter_convo.kernel.conversation import Conversation
from jupyter_convo.kernel.magics import ConvoMagics

WAIT = 90.0
EXAMPLE = Path(__file__).resolve().parents[2] / "notebooks" / "runs" / "sales-summary"


def test_replay_an_example_then_export_it_and_save_it_as_a_notebook(
    shell: Any, magics: ConvoMagics, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = shell.run_cell(f"conv = %convo replay {EXAMPLE} --no-view")
    assert result.success, result.error_in_exec
    conv = shell.user_ns["conv"]
    assert isinstance(conv, Conversation) and magics.current is conv

    assert conv.wait(WAIT) == "awaiting_user_input"
    summary = next(e for e in conv.events if e["kind"] == "replay_summary")
    steps = [e for e in conv.events if e["kind"] == "replay_step"]
    assert (summary["mode"], summary["steps"], summary["reproduced"]) == ("actions", 9, 9)
    assert [s["verdict"] for s in steps] == ["reproduced"] * 9
    assert conv.title == "Replay of Example: monthly totals from sales.csv"

    export_path = tmp_path / "replayed.zip"
    assert shell.run_cell(f"%convo export -o {export_path}").success  # the current one
    with zipfile.ZipFile(export_path) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        events = zf.read("events.jsonl").decode().splitlines()
    assert manifest["conversation_id"] == conv.id
    assert sum('"kind":"replay_step"' in line for line in events) == 9

    notebook_path = tmp_path / "replayed.ipynb"
    assert shell.run_cell(f"%convo notebook {conv.id} --output {notebook_path}").success
    notebook = nbformat.read(notebook_path, as_version=4)
    assert notebook.metadata["jupyter_convo"]["conversation_id"] == conv.id
    assert "!cat summary.txt" in [cell.source for cell in notebook.cells]
    out = capsys.readouterr().out
    assert f"Exported conversation {conv.id} to {export_path}." in out
    assert f"as the notebook {notebook_path}." in out


def test_import_reports_its_new_id_and_bad_files_in_one_line(
    shell: Any,
    magics: ConvoMagics,
    convo_server: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert shell.run_cell(f"meta = %convo import {EXAMPLE}").success
    meta = shell.user_ns["meta"]
    assert meta["title"] == "Example: monthly totals from sales.csv"
    assert f"as conversation {meta['id']}." in capsys.readouterr().out
    assert convo_server.client().get(meta["id"])["status"] == "STOPPED"

    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip at all")
    assert shell.run_cell(f"%convo import {bad}").success
    assert shell.run_cell(f"%convo import {tmp_path / 'missing-folder'}").success
    errors = capsys.readouterr().err.splitlines()
    assert errors[0].startswith("%convo: the server refused: invalid export: not a zip file")
    assert errors[0].endswith("(HTTP 400)")
    assert errors[1] == f"%convo: {tmp_path / 'missing-folder'} does not exist"


def test_a_local_export_becomes_a_notebook_or_a_local_replay_as_in_the_cli(
    shell: Any, magics: ConvoMagics, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    notebook_path = tmp_path / "example.ipynb"
    assert shell.run_cell(f"%convo notebook {EXAMPLE} -o {notebook_path}").success
    notebook = nbformat.read(notebook_path, as_version=4)
    assert notebook.metadata["jupyter_convo"]["conversation_id"] == "example-sales-summary"

    target = tmp_path / "replayed"
    result = shell.run_cell(f"summary = %convo replay {EXAMPLE} --local {target}")
    assert result.success, result.error_in_exec
    summary = shell.user_ns["summary"]
    assert (summary["kind"], summary["steps"], summary["reproduced"]) == ("replay_summary", 9, 9)
    assert (target / "workspace" / "summary.txt").is_file()
    out = capsys.readouterr().out
    assert "as the notebook" in out and "step 9: reproduced" in out

    assert shell.run_cell("%convo replay missing.zip").success
    assert capsys.readouterr().err.strip() == (
        "%convo: missing.zip does not exist (and is not a conversation id)"
    )
