"""The default (process) sandbox's jail, through real conversations: a scripted agent tries
to get out, and the same conversation's normal work still gets done.

Every destructive step targets canary files in a temporary HOME (the runtime runs with
HOME pointing there) and only ever runs after the jail is known to work: the module fails
(before any agent step) where bubblewrap cannot jail, and its managers require the jail
(``c.Confinement.required``), so a conversation that would run unconfined never starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import socket
import sys
import tempfile
import threading
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from jupyter_convo.agent.settings import AgentSettings
from jupyter_convo.events.inputs import MessageInput
from jupyter_convo.events.log import EventLog
from jupyter_convo.events.schema import (
    AgentStateEvent,
    CommandEvent,
    CommandOutputEvent,
    Event,
    FileContentEvent,
    FileEditResultEvent,
    PythonEvent,
    PythonOutputEvent,
    SandboxEvent,
)
from jupyter_convo.manager.config import ManagerConfig
from jupyter_convo.manager.nested import NestedConversationManager
from jupyter_convo.manager.sandboxes import make_sandbox
from jupyter_convo.manager.sandboxes.confinement import Confinement
from jupyter_convo.runtime.models import InitialMessage
from jupyter_convo.store.conversations import StartTask, StartTaskStatus
from jupyter_convo.store.settings import SettingsStore, SettingsUpdate
from jupyter_convo.testing import ScriptedLLM, llm_config_for, reply, tool_call, tool_calls

pytestmark = pytest.mark.integration

WAIT = 60.0  # upper bound of every wait on an event; reaching it fails the test
PYTHON = sys.executable
LLM_KEY = "sk-canary-llm-key-0123456789"
CANARIES = {
    "canary.txt": "canary in the real home\n",
    ".ssh/id_rsa": "-----BEGIN CANARY PRIVATE KEY-----\n",
    "notes/keep.txt": "keep me\n",
}
OTHER_SECRET = "other conversation's secret 4242\n"
HOME_PARENT = "/var/tmp" if os.path.isdir("/var/tmp") else None

MakeManager = Callable[..., Awaitable[NestedConversationManager]]


# --- fixtures -------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def jail_works() -> None:
    """No agent step of this module runs unless the jail works here."""
    path, reason = Confinement().check()
    if path is None:
        pytest.fail(
            f"bubblewrap cannot jail here ({reason}); these tests never run their steps "
            "unconfined. Install it (scripts/test.sh does: apt-get install bubblewrap)."
        )


@pytest.fixture
def home(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A HOME full of canaries; the runtimes (and their tools) inherit it. Not under /tmp
    (where HOMEs never are): the jail's /tmp is the conversation's own, and folders leading
    to mounts under the host's /tmp would appear (writable, but private) inside it."""
    path = Path(tempfile.mkdtemp(prefix="convo-home-", dir=HOME_PARENT))
    for name, text in CANARIES.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    monkeypatch.setenv("HOME", str(path))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def data_dir(home: Path) -> Path:
    """Where the default data dir would be: inside HOME."""
    return home / ".local" / "share" / "jupyter" / "convo"


@pytest.fixture
async def make_manager(data_dir: Path) -> AsyncIterator[MakeManager]:
    made: list[NestedConversationManager] = []

    async def make(**confinement: Any) -> NestedConversationManager:
        config = ManagerConfig(data_dir=data_dir, keep_runtimes_on_shutdown=False)
        policy = Confinement(**{"required": True, **confinement})
        manager = NestedConversationManager(
            config, sandbox=make_sandbox(config, confinement=policy)
        )
        await manager.start()
        made.append(manager)
        return manager

    yield make
    for manager in made:
        await manager.shutdown()


@pytest.fixture
def settings(scripted_llm: ScriptedLLM) -> AgentSettings:
    return AgentSettings(llm=llm_config_for(scripted_llm), command_timeout=180)


def snapshot(folder: Path, *, leave_out: Path) -> dict[str, str]:
    """Every file under ``folder`` but those under ``leave_out`` (relative path -> text)."""
    return {
        str(path.relative_to(folder)): path.read_text(errors="replace")
        for path in sorted(folder.rglob("*"))
        if path.is_file() and not path.is_symlink() and leave_out not in path.parents
    }


def none_exist(*paths: Path) -> bool:
    return not any(path.exists() for path in paths)


def read_log(data_dir: Path, conversation_id: str) -> list[Event]:
    path = data_dir / "conversations" / conversation_id / "events.jsonl"
    with EventLog(path, read_only=True) as event_log:
        return event_log.read()


async def wait_for_state(
    manager: NestedConversationManager, conversation_id: str, state: str, after: int = -1
) -> list[Event]:
    """The log once the agent reached ``state`` after event ``after``."""

    async def reached() -> None:
        stream = manager.subscribe(conversation_id, after_id=after)
        try:
            async for event in stream:
                if isinstance(event, AgentStateEvent):
                    if event.state.value == state:
                        return
                    assert event.state.value != "error", f"the agent failed: {event}"
        finally:
            await stream.aclose()
        raise AssertionError(f"the stream of {conversation_id} ended before {state}")

    await asyncio.wait_for(reached(), WAIT * 4)
    return read_log(manager.config.data_dir, conversation_id)


async def task_outcome(manager: NestedConversationManager, task_id: str) -> StartTask:
    """The start task once it is READY or failed."""

    async def outcome() -> StartTask:
        async for update in manager.start_task_updates(task_id):
            if update.status in (StartTaskStatus.READY, StartTaskStatus.ERROR):
                return update
        raise AssertionError(f"start task {task_id} ended without an outcome")

    return await asyncio.wait_for(outcome(), WAIT)


async def start(
    manager: NestedConversationManager, settings: AgentSettings, text: str
) -> tuple[str, list[Event]]:
    task = await manager.create_conversation(
        user_id="ada", settings=settings, initial_message=InitialMessage(text=text)
    )
    assert task.conversation_id is not None
    outcome = await task_outcome(manager, task.id)
    assert outcome.status is StartTaskStatus.READY, outcome.detail
    events = await wait_for_state(manager, task.conversation_id, "awaiting_user_input")
    return task.conversation_id, events


def outputs(events: list[Event]) -> dict[str, str]:
    """What each command or code (by its text) answered: output, or stdout+stderr+error."""
    by_id = {event.id: event for event in events}
    answers: dict[str, str] = {}
    for event in events:
        action = by_id.get(event.cause) if event.cause is not None else None
        if isinstance(event, CommandOutputEvent) and isinstance(action, CommandEvent):
            answers[action.command] = event.output
        elif isinstance(event, PythonOutputEvent) and isinstance(action, PythonEvent):
            error = f"{event.error.ename}: {event.error.evalue}" if event.error else ""
            answers[action.code] = event.stdout + event.stderr + error
    return answers


def sandbox_events(events: list[Event]) -> list[SandboxEvent]:
    return [event for event in events if isinstance(event, SandboxEvent)]


def tiny_wheel(folder: Path) -> Path:
    """A pure-Python wheel built by hand: pip installs it with no index and no network."""
    folder.mkdir(parents=True, exist_ok=True)
    info = "convo_tiny-1.0.dist-info"
    files = {
        "convo_tiny/__init__.py": "VALUE = 'tiny-ok'\n",
        f"{info}/METADATA": "Metadata-Version: 2.1\nName: convo_tiny\nVersion: 1.0\n",
        f"{info}/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    files[f"{info}/RECORD"] = "".join(f"{name},,\n" for name in [*files, f"{info}/RECORD"])
    wheel = folder / "convo_tiny-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return wheel


@contextlib.contextmanager
def tcp_listener() -> Iterator[tuple[int, list[str]]]:
    """A TCP server on the host's loopback; the list records each connection accepted."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    accepted: list[str] = []
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                connection, address = server.accept()
            except OSError:
                continue
            accepted.append(str(address))
            connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1], accepted
    finally:
        done.set()
        thread.join(5)
        server.close()


def connect_code(port: int) -> str:
    return (
        "import socket\n"
        f"socket.create_connection(('127.0.0.1', {port}), timeout=5).close()\n"
        "print('CONNECTED')"
    )


# --- escape attempts and normal work in one conversation ------------------------------


async def test_the_agent_stays_in_its_jail_and_its_work_gets_done(
    make_manager: MakeManager,
    settings: AgentSettings,
    scripted_llm: ScriptedLLM,
    home: Path,
    data_dir: Path,
    tmp_path: Path,
) -> None:
    wheels = tmp_path / "wheels"
    tiny_wheel(wheels)
    manager = await make_manager(read_only_paths=[str(wheels)])
    SettingsStore(data_dir).update("ada", SettingsUpdate(llm_api_key=SecretStr(LLM_KEY)))
    scripted_llm.add_script([reply("ok")], match="other conversation")
    scripted_llm.add_script([reply("ready")], match="jail check")

    other, _ = await start(manager, settings, "other conversation")
    other_workspace = data_dir / "conversations" / other / "workspace"
    (other_workspace / "secret.txt").write_text(OTHER_SECRET)
    cid, first = await start(manager, settings, "jail check")
    jail = sandbox_events(first)
    assert len(jail) == 1 and jail[0].confined and jail[0].mechanism == "bubblewrap", jail
    assert jail[0].network and jail[0].home == str(data_dir / "conversations" / cid / "home")
    mounts = {(m.path, m.mode) for m in jail[0].mounts}
    workspace = data_dir / "conversations" / cid / "workspace"
    assert (str(workspace), "rw") in mounts and (str(wheels), "ro") in mounts
    assert ("/usr", "ro") in mounts
    # Planted by someone outside (the user): a link to the other conversation's secret.
    os.symlink(other_workspace / "secret.txt", workspace / "planted-link.txt")
    os.link(other_workspace / "secret.txt", workspace / "planted-hardlink.txt")
    home_before = snapshot(home, leave_out=data_dir)
    runtime_pid = json.loads((data_dir / "conversations" / cid / "runtime.json").read_text())["pid"]
    session_key = manager.session_key(cid)
    secret_file = data_dir / "settings" / "ada.secrets.json"
    assert LLM_KEY in secret_file.read_text()

    attacks = {
        "home": (
            f"rm -rf {home}/canary.txt {home}/.ssh; echo pwned > {home}/canary.txt; "
            f"rm -rf ~/; mkdir -p {home}/newdir; ls -a {home}"
        ),
        "secrets": f"cat {secret_file}; cat {data_dir}/server_secret | od -c | head -2",
        "store": f"ls {data_dir}; head -c 64 {data_dir}/convo.db",
        "by_path": f"cat {other_workspace}/secret.txt; ls {data_dir}/conversations",
        "by_symlink": (
            f"ln -s {other_workspace}/secret.txt via-link.txt; cat via-link.txt; "
            "cat planted-link.txt"
        ),
        "by_hardlink": f"ln {other_workspace}/secret.txt via-hardlink.txt; cat via-hardlink.txt",
        "write_out": (
            f"echo x > /etc/evil; echo x > /usr/evil; touch /evil; echo x > {tmp_path}/out.txt; "
            f"echo x > {data_dir}/evil"
        ),
        "processes": (
            f"cat /proc/{runtime_pid}/environ; ps -eo pid,args; "
            "cat /proc/[0-9]*/environ | tr '\\0' '\\n' | grep -c JUPYTER_CONVO_SESSION_KEY; "
            "ls -l /proc/self/fd/"
        ),
    }
    python_attacks = {
        "py_home": (
            "import os, pathlib\n"
            f"home = pathlib.Path({str(home)!r})\n"
            "for name in ('canary.txt', 'notes/keep.txt'):\n"
            "    try:\n"
            "        (home / name).write_text('pwned')\n"
            "    except OSError as exc:\n"
            "        print('refused', name, type(exc).__name__)\n"
        ),
        "py_environ": (
            "import os\n"
            "found = []\n"
            "for pid in [p for p in os.listdir('/proc') if p.isdigit()]:\n"
            "    try:\n"
            "        found.append(open(f'/proc/{pid}/environ', 'rb').read())\n"
            "    except OSError:\n"
            "        pass\n"
            f"print('visible processes:', len(found))\n"
            f"print('runtime visible:', os.path.exists('/proc/{runtime_pid}/cmdline') and "
            f"b'jupyter_convo.runtime' in open('/proc/{runtime_pid}/cmdline', 'rb').read())\n"
            "print('session keys:', sum(b'JUPYTER_CONVO_SESSION_KEY' in e for e in found))\n"
        ),
    }
    work = {
        "shell": "echo hello > note.txt && cat note.txt && pwd && echo $HOME",
        "venv": (
            f"{PYTHON} -m venv .venv && .venv/bin/pip install --quiet --no-index "
            f"--find-links {wheels} convo_tiny && "
            ".venv/bin/python -c 'import convo_tiny; print(convo_tiny.VALUE)'"
        ),
        "connect": f'{PYTHON} -c "{connect_code(0)}"',  # replaced below (port)
        "timeout": "sleep 60",
        "after_timeout": "echo still-here; cat note.txt",
    }
    plot = (
        "import matplotlib.pyplot as plt\n"
        "total = sum(range(10))\n"
        "plt.plot([1, 2, 3], [3, 1, 2]); plt.title('confined'); plt.show()\n"
        "print('total', total)"
    )
    with tcp_listener() as (port, accepted):
        work["connect"] = f'{PYTHON} -c "{connect_code(port)}"'
        steps = [
            reply("ready"),
            tool_calls([("terminal", {"command": c}) for c in attacks.values()]),
            tool_calls([("python", {"code": c}) for c in python_attacks.values()]),
            tool_calls(
                [
                    ("file_editor", {"command": "view", "path": "planted-hardlink.txt"}),
                    ("file_editor", {"command": "view", "path": "planted-link.txt"}),
                    ("file_editor", {"command": "view", "path": str(home / "canary.txt")}),
                ]
            ),
            tool_calls(
                [
                    ("terminal", {"command": work["shell"]}),
                    ("terminal", {"command": work["venv"]}),
                    ("terminal", {"command": work["connect"]}),
                    ("terminal", {"command": work["timeout"], "timeout": 3}),
                    ("terminal", {"command": work["after_timeout"]}),
                    ("python", {"code": plot}),
                    ("python", {"code": "import time; time.sleep(60)", "timeout": 3}),
                    ("python", {"code": "print('kept', total)"}),
                    ("file_editor", {"command": "create", "path": "a.py", "file_text": "x = 1\n"}),
                    (
                        "file_editor",
                        {"command": "str_replace", "path": "a.py", "old_str": "1", "new_str": "2"},
                    ),
                ]
            ),
            reply("done"),
        ]
        scripted_llm.add_script(steps, match="jail check")
        last = first[-1].id
        await manager.send_event_to_conversation(cid, MessageInput(text="go"))
        events = await wait_for_state(manager, cid, "awaiting_user_input", after=last)
        assert accepted, "the confined shell could not reach the host (network on)"

    answers = outputs(events)
    everything = "\n".join(answers.values())
    # Nothing in the real HOME changed, nothing leaked.
    assert snapshot(home, leave_out=data_dir) == home_before
    for name, text in CANARIES.items():
        assert (home / name).read_text() == text
    assert not (home / "newdir").exists()
    for leaked in (LLM_KEY, session_key, OTHER_SECRET.strip(), "BEGIN CANARY"):
        assert leaked not in everything, leaked
    wiped = answers[attacks["home"]]
    assert "canary.txt: Read-only file system" in wiped, wiped
    assert "cannot create directory" in wiped and "newdir" in wiped, wiped
    assert "No such file or directory" in answers[attacks["secrets"]]
    assert "No such file or directory" in answers[attacks["store"]]
    assert "No such file or directory" in answers[attacks["by_path"]]
    assert "No such file or directory" in answers[attacks["by_symlink"]]
    assert "No such file or directory" in answers[attacks["by_hardlink"]]
    assert not (workspace / "via-hardlink.txt").exists()
    assert (other_workspace / "secret.txt").read_text() == OTHER_SECRET
    refusals = answers[attacks["write_out"]]
    assert refusals.count("Read-only file system") >= 3, refusals
    assert none_exist(Path("/etc/evil"), Path("/usr/evil"), tmp_path / "out.txt", data_dir / "evil")
    processes = answers[attacks["processes"]]
    assert "jupyter_convo.runtime" not in processes and "pytest" not in processes
    assert "events.jsonl" not in processes and "cassette" not in processes
    assert "refused canary.txt" in answers[python_attacks["py_home"]]
    environ = answers[python_attacks["py_environ"]]
    assert "runtime visible: False" in environ and "session keys: 0" in environ
    files = [event for event in events if isinstance(event, FileContentEvent)]
    assert "hard links" in (files[0].error or "")
    assert "outside the workspace" in (files[1].error or "")
    assert "outside the workspace" in (files[2].error or "")

    # The normal work, confined.
    assert answers[work["shell"]].splitlines() == [
        "hello",
        str(workspace),
        str(data_dir / "conversations" / cid / "home"),
    ]
    assert "tiny-ok" in answers[work["venv"]], answers[work["venv"]]
    assert "CONNECTED" in answers[work["connect"]]
    timed_out = [e for e in events if isinstance(e, CommandOutputEvent) and e.timed_out]
    assert len(timed_out) == 1 and "interrupted (Ctrl-C)" in timed_out[0].output
    assert "still-here" in answers[work["after_timeout"]]
    plots = [e for e in events if isinstance(e, PythonOutputEvent) and e.display_data]
    assert plots and "image/png" in plots[0].display_data[0]
    python_timeout = [e for e in events if isinstance(e, PythonOutputEvent) and e.timed_out]
    assert len(python_timeout) == 1 and python_timeout[0].error is not None
    assert python_timeout[0].error.ename == "KeyboardInterrupt"
    assert "kept 45" in answers["print('kept', total)"]
    edits = [e for e in events if isinstance(e, FileEditResultEvent)]
    assert [e.error for e in edits] == [None, None]
    assert (workspace / "a.py").read_text() == "x = 2\n"


# --- the network ----------------------------------------------------------------------


async def test_a_conversation_without_network_cannot_connect_even_after_a_restart(
    make_manager: MakeManager, settings: AgentSettings, scripted_llm: ScriptedLLM
) -> None:
    manager = await make_manager()
    with tcp_listener() as (port, accepted):
        code = connect_code(port)
        command = f'{PYTHON} -c "{code}"'
        turn = tool_calls([("terminal", {"command": command}), ("python", {"code": code})])
        scripted_llm.add_script([turn, reply("tried"), turn, reply("tried again")], match="offline")
        offline = settings.model_copy(update={"network": False})
        cid, events = await start(manager, offline, "offline")
        jail = sandbox_events(events)[-1]
        assert jail.confined and not jail.network and jail.network_off_by == "conversation"
        answers = outputs(events)
        assert "CONNECTED" not in answers[command] and "Connection refused" in answers[command]
        assert "ConnectionRefusedError" in answers[code]  # the kernel still works: ipc
        # Restarted without saying anything about the network: it stays off.
        await manager.close_session(cid)
        await manager.maybe_start_agent_loop(
            cid, user_id="ada", settings=settings, initial_message=InitialMessage(text="again")
        )
        events = await wait_for_state(manager, cid, "awaiting_user_input", after=events[-1].id)
        restarted = sandbox_events(events)
        assert len(restarted) == 2 and not restarted[-1].network
        answers = outputs(events[events.index(restarted[-1]) :])
        assert "Connection refused" in answers[command]
        assert accepted == []


# --- without bubblewrap ---------------------------------------------------------------


async def test_without_bubblewrap_the_sandbox_warns_and_required_refuses(
    make_manager: MakeManager,
    settings: AgentSettings,
    scripted_llm: ScriptedLLM,
    data_dir: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    missing = str(tmp_path / "no-such-bwrap")
    log = logging.getLogger("jupyter_convo.tests.confinement")
    with caplog.at_level(logging.WARNING, logger=log.name):
        warned = await make_manager(bwrap_path=missing, required=False, log=log)
    assert "UNCONFINED" in caplog.text and "no-such-bwrap" in caplog.text
    scripted_llm.add_script(
        [tool_call("terminal", {"command": "echo harmless"}), reply("done")], match="unjailed"
    )
    _, events = await start(warned, settings, "unjailed")
    jail = sandbox_events(events)
    assert len(jail) == 1 and not jail[0].confined and jail[0].mechanism == "none"
    assert "NOT CONFINED" in jail[0].message and "no-such-bwrap" in jail[0].message
    assert "harmless" in outputs(events)["echo harmless"]
    await warned.shutdown()

    caplog.clear()
    with caplog.at_level(logging.ERROR, logger=log.name):
        strict = await make_manager(bwrap_path=missing, required=True, log=log)
    assert "c.Confinement.required" in caplog.text
    task = await strict.create_conversation(
        user_id="ada", settings=settings, initial_message=InitialMessage(text="unjailed")
    )
    assert task.conversation_id is not None
    last = await task_outcome(strict, task.id)
    assert last.status is StartTaskStatus.ERROR
    assert "c.Confinement.required" in (last.detail or "")
    assert "apt install bubblewrap" in (last.detail or "")
    conversation = data_dir / "conversations" / task.conversation_id
    assert not (conversation / "runtime.json").exists()
    assert not (conversation / "events.jsonl").exists() or not read_log(
        data_dir, task.conversation_id
    )
