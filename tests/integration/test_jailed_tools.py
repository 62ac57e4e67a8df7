"""The terminal and python tools in a real bubblewrap jail behave as they do outside it:
job control and Ctrl-C on timeout, a command ignoring Ctrl-C killed, the shell replaced
after ``exit`` or ``kill -9 $$``, kernel interrupts and a dead kernel replaced; and the
jail, with everything started in it, goes when the tool closes or the runtime dies."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from runtime_harness import StartRuntime
from signal_helpers import SignalState, inherited_signals, signal_state

from jupyter_convo.agent.confine import ConfinementSpec, Confiner, probe
from jupyter_convo.agent.settings import AgentSettings
from jupyter_convo.agent.tools.python import PythonTool
from jupyter_convo.agent.tools.terminal import TerminalTool
from jupyter_convo.agent.workspace import Workspace
from jupyter_convo.events.schema import (
    AgentStateEvent,
    CommandEvent,
    CommandOutputEvent,
    PythonEvent,
    PythonOutputEvent,
    SandboxEvent,
)
from jupyter_convo.testing import ScriptedLLM, llm_config_for, reply, tool_calls

pytestmark = pytest.mark.integration

GONE_TIMEOUT = 15.0


@pytest.fixture
def bwrap() -> str:
    path, reason = probe("bwrap")
    if path is None:
        pytest.fail(
            f"these tests need a working bubblewrap: {reason} (scripts/test.sh installs it)"
        )
    return path


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    return Workspace(tmp_path / "conversation" / "workspace")


@pytest.fixture
def jail(bwrap: str, workspace: Workspace, tmp_path: Path) -> Confiner:
    return Confiner(
        ConfinementSpec(mechanism="bubblewrap", bwrap=bwrap, hidden_paths=[str(tmp_path)]),
        workspace=workspace.root,
        directory=tmp_path / "conversation",
    )


@pytest.fixture
async def terminal(workspace: Workspace, jail: Confiner) -> AsyncIterator[TerminalTool]:
    tool = TerminalTool(workspace, AgentSettings(command_timeout=20, max_output_chars=2000), jail)
    yield tool
    await tool.close()


async def run(tool: TerminalTool, command: str, timeout: float | None = None) -> CommandOutputEvent:
    return await tool.execute(CommandEvent(command=command, timeout=timeout))


async def python(tool: PythonTool, code: str, timeout: float | None = None) -> PythonOutputEvent:
    return await tool.execute(PythonEvent(code=code, timeout=timeout))


def marked(marker: str) -> list[int]:
    """Pids of processes whose command line holds ``marker``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            if marker.encode() in Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" "):
                found.append(int(entry))
    return found


async def appears(marker: str) -> None:
    """Until a process holds ``marker`` (a background job may not have exec'd yet)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + GONE_TIMEOUT
    while not marked(marker):
        if loop.time() > deadline:
            raise AssertionError(f"no process with {marker!r} appeared")
        await asyncio.sleep(0.05)


async def gone(marker: str) -> None:
    """Until no process holds ``marker`` (bounded: fails loudly)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + GONE_TIMEOUT
    while marked(marker):
        if loop.time() > deadline:
            raise AssertionError(f"processes with {marker!r} still run: {marked(marker)}")
        await asyncio.sleep(0.05)


async def test_the_jailed_shell_keeps_its_semantics(
    terminal: TerminalTool, workspace: Workspace
) -> None:
    await run(terminal, "export KEPT=yes; cd /tmp")
    shown = await run(terminal, "set -o | grep monitor; echo $KEPT; pwd")
    assert shown.output.split() == ["monitor", "on", "yes", "/tmp"]  # job control is on
    interrupted = await run(terminal, "echo started; sleep 60; echo never", timeout=1)
    assert interrupted.timed_out and interrupted.exit_code == 130
    assert "interrupted (Ctrl-C)" in interrupted.output and "never" not in interrupted.output
    loop = await run(terminal, "while true; do :; done", timeout=1)
    assert "interrupted (Ctrl-C)" in loop.output
    stubborn = await run(terminal, "trap '' INT; sleep 60", timeout=1)
    assert "ignored Ctrl-C and was killed" in stubborn.output
    assert (await run(terminal, "echo $KEPT; pwd")).output == "yes\n/tmp\n"
    killed = await run(terminal, "echo dying; kill -9 $$")
    assert killed.output.startswith("dying\n") and "a new shell was started" in killed.output
    exited = await run(terminal, "exit 3")
    assert exited.exit_code == 3 and "a new shell was started" in exited.output
    assert (await run(terminal, "pwd")).output == f"{workspace.root}\n"
    cleaned = await run(terminal, "rm -rf /tmp/* 2>/dev/null; echo still-here")
    assert cleaned.output == "still-here\n"


async def test_closing_the_shell_ends_its_jail_and_background_jobs(
    terminal: TerminalTool,
) -> None:
    await run(terminal, "nohup sleep 3021 >/dev/null 2>&1 &")
    await appears("sleep 3021")
    await terminal.close()
    await gone("sleep 3021")


async def test_the_jailed_kernel_interrupts_dies_and_comes_back(
    workspace: Workspace, jail: Confiner
) -> None:
    tool = PythonTool(workspace, AgentSettings(python_timeout=60), jail)
    try:
        await python(tool, "kept = 'here'")
        slow = await python(tool, "import time; time.sleep(60)", timeout=1)
        assert slow.timed_out and slow.error is not None
        assert slow.error.ename == "KeyboardInterrupt"
        assert (await python(tool, "print(kept)")).stdout == "here\n"
        first = tool.session.kernel_pid
        died = await python(tool, "import os; os._exit(1)")
        assert died.error is not None and died.error.ename == "DeadKernelError"
        again = await python(tool, "print('kept' in globals())")
        assert again.stdout == "False\n" and tool.session.kernel_pid not in (None, first)
        await python(tool, "import subprocess; child = subprocess.Popen(['sleep', '3022'])")
        assert marked("sleep 3022")
    finally:
        await tool.close()
    await gone("sleep 3022")


async def test_jailed_tools_started_with_signals_ignored_still_interrupt(
    terminal: TerminalTool, workspace: Workspace, jail: Confiner
) -> None:
    """A server started in the background (``&``, nohup, CI) inherits SIGINT ignored: the
    jailed shell and kernel it starts must not pass that on (the default-signals launcher
    runs before bwrap), or every timeout becomes a kill."""
    with inherited_signals():  # the shell starts now, as under such a server
        await run(terminal, "export KEPT=yes")
    status = await run(terminal, "grep ^Sig /proc/self/status")
    assert signal_state(status.output) == SignalState(frozenset(), frozenset())
    result = await run(terminal, "echo started; sleep 60; echo never", timeout=1)
    assert result.timed_out and result.exit_code == 130
    assert "interrupted (Ctrl-C)" in result.output and "never" not in result.output
    assert (await run(terminal, "echo $KEPT")).output == "yes\n"

    tool = PythonTool(workspace, AgentSettings(python_timeout=60), jail)
    try:
        with inherited_signals():  # the kernel starts now
            await python(tool, "kept = 'here'")
        child = await python(
            tool,
            "import subprocess\n"
            "print(subprocess.run(['grep', '^Sig', '/proc/self/status'], capture_output=True, "
            "text=True).stdout)",
        )
        assert signal_state(child.stdout) == SignalState(frozenset(), frozenset())
        slow = await python(tool, "import time; time.sleep(60)", timeout=1)
        assert slow.timed_out and slow.error is not None
        assert slow.error.ename == "KeyboardInterrupt"
        assert (await python(tool, "print(kept)")).stdout == "here\n"
    finally:
        await tool.close()


async def test_the_jail_dies_with_its_runtime(
    start_runtime: StartRuntime, scripted_llm: ScriptedLLM, bwrap: str
) -> None:
    """A runtime killed outright (SIGKILL to it alone, not its group) takes its shell, its
    kernel and whatever they started along: --die-with-parent."""
    runtime = await start_runtime()
    scripted_llm.add_script(
        [
            tool_calls(
                [
                    ("terminal", {"command": "nohup sleep 3023 >/dev/null 2>&1 &"}),
                    ("python", {"code": "import subprocess; subprocess.Popen(['sleep', '3024'])"}),
                ]
            ),
            reply("started"),
        ]
    )
    body: dict[str, Any] = runtime.create_body("jailed", llm_config_for(scripted_llm), "go")
    body["confinement"] = {"mechanism": "bubblewrap", "bwrap": bwrap}
    async with runtime.client() as client:
        created = await client.post("/api/conversations", json=body)
        assert created.status_code == 201, created.text
    stream = await runtime.connect("jailed")
    await stream.until(
        lambda e: isinstance(e, AgentStateEvent) and e.state.value == "awaiting_user_input",
        timeout=90,
    )
    [jail] = [e for e in stream.events if isinstance(e, SandboxEvent)]
    assert jail.confined
    assert marked("sleep 3023") and marked("sleep 3024")
    os.kill(runtime.proc.pid, signal.SIGKILL)
    runtime.wait_exit()
    await gone("sleep 3023")
    await gone("sleep 3024")
