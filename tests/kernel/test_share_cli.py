"""``jupyter convo export|import|replay|notebook`` against a real server (subprocesses)."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
from jupyter_process import JupyterServer

EXAMPLE = Path(__file__).resolve().parents[2] / "notebooks" / "runs" / "sales-summary"
TIMEOUT = 120.0


def cli(server: JupyterServer, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jupyter_convo.cli", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=cwd,
        env={**os.environ, **server.env()},
        check=False,
    )


def test_import_replay_export_and_notebook_from_a_terminal(
    convo_server: JupyterServer, tmp_path: Path
) -> None:
    imported = cli(convo_server, "import", str(EXAMPLE), cwd=tmp_path)
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.startswith(f"imported {EXAMPLE} as conversation ")
    source_id = imported.stdout.split("as conversation ")[1].split(":")[0]

    replayed = cli(
        convo_server, "replay", source_id, "--mode", "cassette", "--follow", cwd=tmp_path
    )
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    lines = replayed.stdout.splitlines()
    assert lines[0].startswith("replaying into conversation ")
    replay_id = lines[0].removeprefix("replaying into conversation ")
    assert sum(line.endswith(")") and ": reproduced" in line for line in lines) == 9
    assert lines[-1] == "replay (cassette): All 9 steps reproduced."

    exported = cli(convo_server, "export", replay_id, "-o", "r.zip", "--workspace", cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    with zipfile.ZipFile(tmp_path / "r.zip") as zf:
        assert "workspace/summary.txt" in zf.namelist()

    notebook = cli(convo_server, "notebook", source_id, cwd=tmp_path)
    assert notebook.returncode == 0, notebook.stderr
    nbformat.validate(nbformat.read(tmp_path / f"{source_id}.ipynb", as_version=4))

    missing = cli(convo_server, "export", "no-such-conversation", cwd=tmp_path)
    assert missing.returncode == 1
    assert "the server answered 404" in missing.stderr
