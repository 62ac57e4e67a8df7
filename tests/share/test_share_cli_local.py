"""``jupyter convo replay --local`` and ``notebook`` on an export: no server needed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from share_helpers import EXAMPLE

from jupyter_convo.agent.confine import probe
from jupyter_convo.events.log import EventLog
from jupyter_convo.events.schema import SandboxEvent

pytestmark = pytest.mark.integration

TIMEOUT = 120.0


def cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jupyter_convo.cli", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=cwd,
        env=env,
        check=False,
    )


def test_replay_locally_prints_each_verdict(tmp_path: Path) -> None:
    target = tmp_path / "replayed"
    done = cli("replay", str(EXAMPLE), "--local", str(target), "--mode", "cassette", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line for line in lines if line.startswith("step ")] == [
        f"step {n}: reproduced (recorded event {i})"
        for n, i in enumerate([4, 7, 10, 15, 18, 20, 23, 31, 34], start=1)
    ]
    assert "replay (cassette): All 9 steps reproduced." in lines
    assert (target / "workspace" / "summary.txt").read_text().endswith("(amount n/a)\n")
    # Someone else's recorded commands ran in the jail (where bubblewrap works here).
    with EventLog(target / "events.jsonl", read_only=True) as replayed:
        [jail] = [event for event in replayed.read() if event.kind == "sandbox"]
    assert isinstance(jail, SandboxEvent)
    assert jail.confined is (probe("bwrap")[0] is not None), jail.message

    again = cli("replay", str(EXAMPLE), "--local", str(target), cwd=tmp_path)
    assert again.returncode == 1
    assert "already holds a conversation; pick a new folder" in again.stderr


def test_notebook_from_an_export_without_a_server(tmp_path: Path) -> None:
    done = cli("notebook", str(EXAMPLE), "-o", "example.ipynb", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "wrote example.ipynb"
    notebook = nbformat.read(tmp_path / "example.ipynb", as_version=4)
    nbformat.validate(notebook)
    assert notebook.metadata["jupyter_convo"]["conversation_id"] == "example-sales-summary"

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "manifest.json").write_text('{"format_version": 7}')
    refused = cli("notebook", str(broken), cwd=tmp_path)
    assert refused.returncode == 1
    assert "unknown format version 7" in refused.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("replay", "missing.zip"),
        ("replay", "missing.zip", "--local", "out"),
        ("import", "missing.zip"),
        ("notebook", "runs/missing.zip"),
    ],
)
def test_a_missing_file_is_said_plainly_before_any_server_is_looked_for(
    args: tuple[str, ...], tmp_path: Path
) -> None:
    # An empty runtime dir and no JUPYTER_CONVO_URL: no server could be found either, and
    # the missing file is still what the user reads (not a pattern error, not "no server").
    (tmp_path / "runtime").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTER_CONVO_")}
    env["JUPYTER_RUNTIME_DIR"] = str(tmp_path / "runtime")
    done = cli(*args, cwd=tmp_path, env=env)
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith(f"jupyter convo: {args[1]} does not exist"), done.stderr
    assert "pattern" not in done.stderr and "Traceback" not in done.stderr
