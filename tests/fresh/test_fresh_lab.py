"""The main job on a fresh machine: ``scripts/lab.sh`` into a new virtual environment.

The checkout is copied as git sees it (plus the side panel's build, which a checkout makes
with Node), and its ``scripts/lab.sh`` runs as a user runs it: with a new venv's Python,
no LLM configured (so it starts the demo LLM), a HOME of its own. lab.sh installs what it
needs itself (``scripts/install-lab.sh``, reusing pip's cache), so whatever it forgets to
install fails here. Then every notebook in ``notebooks/`` runs with nbclient in that venv's
kernel against that JupyterLab, and finally a Ctrl-C must stop everything lab.sh started:
JupyterLab, its notebook kernels, the conversations' runtimes with the agent's shells and
kernels, and the demo LLM.

This tier takes minutes (a venv, an install, a JupyterLab, real agents), so
``scripts/test.sh`` runs it as a tier of its own (``CONVO_SKIP_FRESH=1`` leaves it out).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import venv
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx
import nbformat
import psutil
import pytest

from jupyter_convo.client import ConvoClient, ServerInfo
from jupyter_convo.testing.jupyter_server import kill_runtimes, url_port, wait_listening

REPO = Path(__file__).resolve().parents[2]
RUNNER = Path(__file__).resolve().parent / "notebook_runner.py"
# Upper bounds, reached only on failure: the first start installs JupyterLab and co.
INSTALL_AND_START_TIMEOUT = 900.0
RUN_TIMEOUT = 900.0
EXIT_TIMEOUT = 120.0
# The demo LLM's tasks (notebooks/demo_llm/*.json match on these words).
FIBONACCI_TASK = (
    "Write hello.py that prints the first 10 Fibonacci numbers, one per line, then run it "
    "and tell me the output."
)
CLEAN_SALES_TASK = "Clean sales.csv: drop duplicate orders and plot revenue by month."
# JupyterLab's own URL line (the demo LLM prints its URL on the same output first).
LAB_URL_LINE = re.compile(r"(http://127\.0\.0\.1:\d+/)lab\b")

pytestmark = [pytest.mark.integration, pytest.mark.timeout(INSTALL_AND_START_TIMEOUT + RUN_TIMEOUT)]


@dataclass
class Lab:
    """``scripts/lab.sh`` running from a copied checkout with a fresh venv."""

    proc: subprocess.Popen[bytes]
    url: str
    token: str
    checkout: Path
    python: Path
    env: dict[str, str]
    home: Path
    log_path: Path
    # Every process a test saw lab.sh start: killed at teardown if a test left one behind.
    seen: list[psutil.Process] = field(default_factory=list)

    @property
    def data_dir(self) -> Path:
        return Path(self.env["JUPYTER_DATA_DIR"]) / "convo"

    def client(self) -> ConvoClient:
        return ConvoClient(ServerInfo(url=self.url, token=self.token))

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")[-12_000:]


def copy_checkout(target: Path) -> Path:
    """The files git knows (tracked, or new and not ignored) and the side panel's build."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)  # mtimes kept: the panel build stays fresh
    built = REPO / "jupyter_convo" / "labextension"
    if built.is_dir():
        shutil.copytree(built, target / "jupyter_convo" / "labextension")
    return target


def user_environment(tmp: Path, venv_dir: Path) -> dict[str, str]:
    """A user's shell with the new venv activated: no LLM configured, a HOME of its own,
    pip's cache shared with this machine's (PyPI stays the only network)."""
    cache = subprocess.run(
        [sys.executable, "-m", "pip", "cache", "dir"], capture_output=True, text=True, check=False
    ).stdout.strip()
    home = tmp / "home"
    home.mkdir()
    keep = ("LANG", "LC_ALL", "TERM", "TZ", "SSL_CERT_FILE", "SSL_CERT_DIR", "PIP_CERT")
    env = {name: os.environ[name] for name in keep if name in os.environ}
    env.update(
        {
            "HOME": str(home),
            "PATH": os.pathsep.join([str(venv_dir / "bin"), "/usr/local/bin", "/usr/bin", "/bin"]),
            "VIRTUAL_ENV": str(venv_dir),
            "JUPYTER_DATA_DIR": str(tmp / "jupyter-data"),
            "JUPYTER_RUNTIME_DIR": str(tmp / "jupyter-runtime"),
            "JUPYTER_CONFIG_DIR": str(tmp / "jupyter-config"),
            "PYTHONUNBUFFERED": "1",
        }
    )
    for name in ("PIP_FIND_LINKS", "PIP_DEFAULT_TIMEOUT", "PIP_DISABLE_PIP_VERSION_CHECK"):
        if name in os.environ:
            env[name] = os.environ[name]
    if cache:
        env["PIP_CACHE_DIR"] = cache
    return env


def _pump(stream: IO[bytes], log_path: Path, found: list[str], ready: threading.Event) -> None:
    with log_path.open("ab") as out:
        for raw in iter(stream.readline, b""):
            out.write(raw)
            out.flush()
            match = LAB_URL_LINE.search(raw.decode(errors="replace"))
            if match and not found:
                found.append(match.group(1))
                ready.set()
    ready.set()  # lab.sh ended: wake the waiter, which then sees no URL


def _as_a_terminal_job() -> None:
    """A terminal's foreground job gets Ctrl-C, whatever this test process inherited (a
    job started with ``&`` by a script, as some CI runners do, ignores SIGINT)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_lab(checkout: Path, python: Path, env: dict[str, str], log_path: Path) -> Lab:
    token = secrets.token_hex(16)
    proc = subprocess.Popen(
        [
            "bash",
            str(checkout / "scripts" / "lab.sh"),
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            "--ServerApp.port=0",
            f"--IdentityProvider.token={token}",
        ],
        cwd=checkout,
        env={**env, "PYTHON": str(python)},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, as a terminal's foreground job
        preexec_fn=_as_a_terminal_job,
    )
    assert proc.stdout is not None
    found: list[str] = []
    ready = threading.Event()
    threading.Thread(target=_pump, args=(proc.stdout, log_path, found, ready), daemon=True).start()
    lab = Lab(proc, "", token, checkout, python, env, Path(env["HOME"]), log_path)
    if not ready.wait(INSTALL_AND_START_TIMEOUT) or not found:
        stop(lab)
        pytest.fail(f"lab.sh did not start JupyterLab (exit {proc.poll()}):\n{lab.log_text()}")
    lab.url = found[0]
    wait_listening(url_port(lab.url), INSTALL_AND_START_TIMEOUT)
    return lab


def stop(lab: Lab) -> None:
    """Teardown: lab.sh if it still runs, then whatever a failed test left behind."""
    if lab.proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(lab.proc.pid, signal.SIGTERM)
        try:
            lab.proc.wait(EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(lab.proc.pid, signal.SIGKILL)
            lab.proc.wait(EXIT_TIMEOUT)
    kill_runtimes(lab.data_dir)
    for proc in lab.seen:
        with contextlib.suppress(psutil.Error):
            proc.kill()  # psutil checks the process is still the one seen (no pid reuse)
    psutil.wait_procs(lab.seen, timeout=EXIT_TIMEOUT)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    tmp = tmp_path_factory.mktemp("fresh")
    venv_dir = tmp / "venv"
    venv.create(venv_dir, with_pip=True, clear=True)
    checkout = copy_checkout(tmp / "checkout")
    env = user_environment(tmp, venv_dir)
    (Path(env["HOME"]) / "canary.txt").write_text("still here")
    started = start_lab(checkout, venv_dir / "bin" / "python", env, tmp / "lab.log")
    try:
        yield started
    finally:
        stop(started)
        assert (started.home / "canary.txt").read_text() == "still here"


def running_conversations(lab: Lab) -> list[str]:
    with lab.client() as client:
        return [
            f"{item['id']} ({item.get('title')})"
            for status in ("STARTING", "RUNNING")
            for item in client.search(status=status, limit=100)["items"]
        ]


def test_every_example_notebook_runs_with_what_lab_sh_installs(lab: Lab, tmp_path: Path) -> None:
    notebooks = sorted((lab.checkout / "notebooks").glob("*.ipynb"))
    assert len(notebooks) >= 3
    args: list[str] = []
    for path in notebooks:
        args += [str(path), str(tmp_path / path.name)]
    done = subprocess.run(
        [str(lab.python), str(RUNNER), *args],
        env=lab.env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, f"{done.stderr[-8000:]}\n--- lab.sh log:\n{lab.log_text()}"
    assert done.stdout.splitlines() == [f"executed {path.name}" for path in notebooks]
    texts = {
        path.stem: json.dumps(nbformat.read(tmp_path / path.name, as_version=4).cells)
        for path in notebooks
    }
    assert "26 rows before, 22 after" in texts["clean_sales"]  # pandas, in the new venv
    assert "ending with 233 and 377" in texts["quickstart"]  # the demo LLM lab.sh started
    assert running_conversations(lab) == [], "a notebook left its conversation running"


def started_processes(lab: Lab) -> tuple[list[psutil.Process], list[psutil.Process]]:
    """Everything lab.sh started, and apart: the runtimes recorded in the data dir with
    their children (the agent's shells and kernels)."""
    everything = {proc.pid: proc for proc in psutil.Process(lab.proc.pid).children(recursive=True)}
    agents: dict[int, psutil.Process] = {}
    for record in lab.data_dir.glob("conversations/*/runtime.json"):
        runtime = psutil.Process(json.loads(record.read_text())["pid"])
        agents[runtime.pid] = runtime
        agents.update({proc.pid: proc for proc in runtime.children(recursive=True)})
    return list({**everything, **agents}.values()), list(agents.values())


def command_line(proc: psutil.Process) -> str:
    with contextlib.suppress(psutil.Error):
        return " ".join(proc.cmdline())
    return ""


def still_running(processes: list[psutil.Process]) -> list[str]:
    """The ones still alive (not zombies: those are dead, waiting for their parent)."""
    alive = []
    for proc in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(f"{proc.pid} {command_line(proc)}")
    return alive


def rest_until_idle(client: ConvoClient, **options: object) -> str:
    updates = list(client.stream_start(**options))
    task = updates[-1]
    assert task.get("status") == "READY", updates
    conversation_id = str(task["conversation_id"])
    states = [
        event.get("state")
        for event in client.events(conversation_id, until_idle=True)
        if event.get("kind") == "agent_state"
    ]
    assert states[-1] in ("awaiting_user_input", "finished"), states
    return conversation_id


def test_ctrl_c_stops_everything_lab_sh_started(lab: Lab) -> None:
    workspace = lab.checkout / "notebooks" / "ctrl_c_workspace"
    data = lab.checkout / "notebooks" / "data"
    with lab.client() as client:
        # A shell (terminal tool) and a kernel (python tool) of the agent stay up while
        # their conversations wait for the user.
        rest_until_idle(client, initial_message=FIBONACCI_TASK, workspace=str(workspace))
        rest_until_idle(client, initial_message=CLEAN_SALES_TASK, workspace=str(data))
        assert len(client.runtimes()) == 2
    # A notebook kernel of the user's, started by JupyterLab.
    started = httpx.post(
        f"{lab.url}api/kernels", headers={"Authorization": f"token {lab.token}"}, timeout=60
    )
    assert started.status_code == 201, started.text
    user_kernel = started.json()["id"]

    processes, agents = started_processes(lab)
    lab.seen.extend(processes)
    lines = [command_line(proc) for proc in processes]
    agent_lines = [command_line(proc) for proc in agents]
    assert sum("jupyter_convo.runtime" in line for line in agent_lines) == 2, agent_lines
    assert any("ipykernel_launcher" in line for line in agent_lines), agent_lines
    assert any(Path(line.split(" ")[0]).name == "bash" for line in agent_lines), agent_lines
    assert sum("jupyter_convo.testing" in line for line in lines) == 1, lines  # the demo LLM
    assert any("jupyterlab" in line for line in lines), lines
    assert any(user_kernel in line for line in lines), lines

    os.killpg(lab.proc.pid, signal.SIGINT)  # what Ctrl-C in lab.sh's terminal does
    lab.proc.wait(EXIT_TIMEOUT)

    left = still_running(processes)
    assert left == [], "still running after Ctrl-C:\n" + "\n".join(left) + "\n" + lab.log_text()
    assert list(lab.data_dir.glob("conversations/*/runtime.json")) == []


def test_sigterm_to_lab_sh_alone_stops_it_and_it_starts_again(lab: Lab) -> None:
    """What ``kill PID`` or a service manager does: signal lab.sh only, not its group.
    The start is lab.sh's second one on this venv: the install step has nothing to do."""
    if lab.proc.poll() is None:  # run on its own: end the first start the Ctrl-C way
        os.killpg(lab.proc.pid, signal.SIGINT)
        lab.proc.wait(EXIT_TIMEOUT)
    again = start_lab(lab.checkout, lab.python, lab.env, lab.log_path.with_name("lab-2.log"))
    try:
        processes = psutil.Process(again.proc.pid).children(recursive=True)
        again.seen.extend(processes)
        lines = [command_line(proc) for proc in processes]
        assert any("jupyterlab" in line for line in lines), lines
        assert any("jupyter_convo.testing" in line for line in lines), lines  # the demo LLM
        with again.client() as client:
            assert client.runtimes() == []  # nothing left over from the first start

        again.proc.send_signal(signal.SIGTERM)
        again.proc.wait(EXIT_TIMEOUT)

        left = still_running(processes)
        assert left == [], "still running after SIGTERM:\n" + "\n".join(left)
    finally:
        stop(again)
