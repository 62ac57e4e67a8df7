"""Every example notebook, executed top to bottom with nbclient, as a user would run it.

The notebooks contain nothing test-specific: they find the server from the environment and
the server finds its LLM from its own (``JUPYTER_CONVO_LLM_*``), so with a real provider
configured the same notebooks talk to it. Here the server's LLM is the scripted one,
answering from ``notebooks/demo_llm/<notebook>.json`` (matched by the notebook's task text).
"""

from __future__ import annotations

import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "kernel"))
from jupyter_process import JupyterServer, start_jupyter_server

from jupyter_convo.testing import ScriptedLLM, load_script_file

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
# The demo scripts ship next to the notebooks: scripts/lab.sh serves them when no LLM is set.
SCRIPTS = Path(__file__).resolve().parents[2] / "notebooks" / "demo_llm"
CELL_TIMEOUT = 180
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


@pytest.fixture(scope="module")
def notebook_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The notebooks folder copied out of the repo: the runs write files next to them."""
    target = tmp_path_factory.mktemp("root") / "notebooks"
    shutil.copytree(REPO / "notebooks", target)
    return target


@pytest.fixture(scope="module")
def notebook_llm() -> Iterator[ScriptedLLM]:
    llm = ScriptedLLM()
    for script in sorted(SCRIPTS.glob("*.json")):
        llm.load(load_script_file(script))
    with llm.serve():
        yield llm


@pytest.fixture(scope="module")
def notebook_server(
    notebook_llm: ScriptedLLM, notebook_copy: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[JupyterServer]:
    server = start_jupyter_server(
        tmp_path_factory.mktemp("server"),
        llm_base_url=notebook_llm.base_url,
        root=notebook_copy.parent,
    )
    try:
        yield server
    finally:
        server.stop()


def execute(path: Path, server: JupyterServer, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Run the notebook top to bottom twice in a row, as a user who runs it again would;
    after each run nothing it started may still run. Returns both executed notebooks."""
    for name, value in server.env().items():
        monkeypatch.setenv(name, value)  # the kernel finds the server the way a user's does
    runs = []
    for _ in range(2):
        notebook = nbformat.read(path, as_version=4)
        client = NotebookClient(
            notebook,
            kernel_name="python3",
            timeout=CELL_TIMEOUT,
            resources={"metadata": {"path": str(path.parent)}},
        )
        client.execute()  # raises CellExecutionError, with the cell and traceback, on any error
        assert_nothing_left_running(server, path.name)
        runs.append(notebook)
    return runs


def assert_nothing_left_running(server: JupyterServer, name: str) -> None:
    """No conversation runs once the notebook is done (this server runs only notebooks)."""
    with server.client() as client:
        running = [
            f"{item['id']} ({item.get('title')})"
            for status in ("STARTING", "RUNNING")
            for item in client.search(status=status, limit=100)["items"]
        ]
        assert running == [], f"{name} left conversations running: {running}"
        assert client.runtimes() == [], f"{name} left agent loops running"


def printed(notebook: Any) -> str:
    texts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                texts.append(output["text"])
            elif "text/plain" in output.get("data", {}):
                texts.append(output["data"]["text/plain"])
    return "\n".join(texts)


def error_rows(transcript: str) -> list[str]:
    """The text of the rows a saved transcript marks as errors (failed steps)."""
    rows = re.findall(r"<div class=\"convo-row convo-error\"[^>]*>(.*?)</div>", transcript, re.S)
    return [re.sub(r"<[^>]+>", " ", row).strip() for row in rows]


def outputs_with(notebook: Any, mime: str) -> list[dict[str, Any]]:
    return [
        output
        for cell in notebook.cells
        for output in cell.get("outputs", [])
        if mime in output.get("data", {})
    ]


def test_every_notebook_has_a_script_and_explains_itself() -> None:
    assert {p.stem for p in NOTEBOOKS} >= {"quickstart", "clean_sales", "steering"}
    for path in NOTEBOOKS:
        assert (SCRIPTS / f"{path.stem}.json").is_file(), f"no scripted LLM run for {path.name}"
        notebook = nbformat.read(path, as_version=4)
        markdown = [c for c in notebook.cells if c.cell_type == "markdown"]
        assert len(markdown) >= 3, f"{path.name} should explain itself in Markdown"
        assert not any(c.get("outputs") for c in notebook.cells), f"{path.name} has outputs"


def test_quickstart(
    notebook_copy: Path, notebook_server: JupyterServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for notebook in execute(notebook_copy / "quickstart.ipynb", notebook_server, monkeypatch):
        text = printed(notebook)
        assert "0 1 1 2 3 5 8 13 21 34" in text
        assert "ending with 233 and 377" in text
        assert "Stopped conversation" in text
        assert "step 9: reproduced" in text  # the replay of runs/sales-summary
        views = outputs_with(notebook, WIDGET_VIEW)
        assert len(views) == 2  # the start cell and the send cell
        # Every step of the agent worked, the second run's too (its workspace starts empty).
        assert [row for view in views for row in error_rows(view["data"]["text/html"])] == []
        # Saved with the notebook: a readable transcript next to each widget, brought up to
        # date by wait() (GitHub and nbconvert show it instead of a blank widget). Each
        # cell's view holds its own turn: the start cell's stops where the send cell's
        # begins, so no row is saved (or shown) twice.
        start_view, send_view = views[0]["data"], views[1]["data"]
        assert "python hello.py" in start_view["text/plain"]
        assert "ending with 233 and 377" not in start_view["text/html"]
        assert "ending with 233 and 377" in send_view["text/html"]
        assert "<table>" in str(outputs_with(notebook, "text/html"))  # %convo list
    assert "range(15)" in (notebook_copy / "quickstart_workspace" / "hello.py").read_text()


def test_clean_sales(
    notebook_copy: Path, notebook_server: JupyterServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for notebook in execute(notebook_copy / "clean_sales.ipynb", notebook_server, monkeypatch):
        text = printed(notebook)
        assert "26 rows before, 22 after" in text
        assert "finished" in text and "March is the best month" in text
        images = outputs_with(notebook, "image/png")
        assert images, "the notebook shows the agent's plot"
        transcript = outputs_with(notebook, WIDGET_VIEW)[0]["data"]["text/html"]
        assert '<img alt="plot" src="data:image/png;base64,' in transcript
    saved = (notebook_copy / "data" / "revenue_by_month.png").read_bytes()
    assert saved.startswith(b"\x89PNG")


def test_steering(
    notebook_copy: Path, notebook_server: JupyterServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for notebook in execute(notebook_copy / "steering.ipynb", notebook_server, monkeypatch):
        text = printed(notebook)
        assert "REJECT  command rm -rf ./*" in text
        assert "CONFIRM command rm build.tmp cache.tmp" in text
        assert "['notes.txt', 'run.log']" in text
        assert "`run.log` is 20 bytes." in text
    assert sorted(p.name for p in (notebook_copy / "steering_demo").iterdir()) == [
        "notes.txt",
        "run.log",
    ]
