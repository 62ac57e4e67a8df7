"""The terminal tool against a real bash: persistence, interrupts, limits, restarts."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from signal_helpers import SignalState, inherited_signals, signal_state

from jupyter_convo.agent.settings import AgentSettings
from jupyter_convo.agent.tools.terminal import TerminalTool
from jupyter_convo.agent.workspace import Workspace
from jupyter_convo.events.schema import CommandOutputEvent

pytestmark = pytest.mark.integration

GONE_TIMEOUT = 10.0


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "workspace"
    path.mkdir()
    return path


@pytest.fixture
async def terminal(root: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[TerminalTool]:
    monkeypatch.setenv("JUPYTER_CONVO_SESSION_KEY", "runtime-only-key")
    settings = AgentSettings(
        command_timeout=20,
        max_output_chars=1000,
        secrets={"WAREHOUSE_TOKEN": SecretStr("tok-123456789")},
    )
    tool = TerminalTool(Workspace(root), settings)
    yield tool
    await tool.close()


async def run(terminal: TerminalTool, command: str, **args: Any) -> CommandOutputEvent:
    action = terminal.parse({"command": command, **args}, tool_call_id="call")
    result = await terminal.execute(action)
    assert result.command == command
    assert result.tool_call_id == "call"
    return result


def shell_pid(terminal: TerminalTool) -> int:
    assert terminal._session is not None
    pid = terminal._session.pid
    assert pid is not None
    return pid


async def wait_gone(pid: int) -> None:
    """Wait until ``pid`` has exited (a zombie left for init to reap counts as exited)."""
    deadline = asyncio.get_running_loop().time() + GONE_TIMEOUT
    while not _gone(pid):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"process {pid} still running {GONE_TIMEOUT} s after close")
        await asyncio.sleep(0.05)


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            state = handle.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


async def test_starts_in_the_workspace_and_keeps_cwd_and_env(
    terminal: TerminalTool, root: Path
) -> None:
    first = await run(terminal, "pwd")
    assert first.output == f"{root}\n"
    assert first.cwd == str(root)
    await run(terminal, "mkdir -p data/raw && cd data")
    await run(terminal, "export REGION=emea; greet() { echo hello $1; }")
    result = await run(terminal, "pwd; echo $REGION; greet world")
    assert result.output == f"{root}/data\nemea\nhello world\n"
    assert result.cwd == str(root / "data")
    assert result.exit_code == 0


async def test_exit_codes(terminal: TerminalTool) -> None:
    assert (await run(terminal, "true")).exit_code == 0
    assert (await run(terminal, "false")).exit_code == 1
    missing = await run(terminal, "no-such-command-xyz")
    assert missing.exit_code == 127
    assert "command not found" in missing.output
    assert (await run(terminal, "(exit 42)")).exit_code == 42


async def test_output_is_stdout_and_stderr_in_order(terminal: TerminalTool) -> None:
    result = await run(terminal, "echo out; echo err >&2; echo out2")
    assert result.output == "out\nerr\nout2\n"


async def test_output_without_trailing_newline(terminal: TerminalTool) -> None:
    assert (await run(terminal, "printf 'no newline'")).output == "no newline"
    assert (await run(terminal, "printf ''")).output == ""


async def test_multiline_commands_and_heredocs(terminal: TerminalTool, root: Path) -> None:
    command = "cat > notes.txt <<'EOF'\n$HOME stays literal\nEOF\nfor i in 1 2; do\n  echo $i\ndone"
    result = await run(terminal, command)
    assert result.output == "1\n2\n"
    assert (root / "notes.txt").read_text() == "$HOME stays literal\n"


async def test_commands_reading_stdin_get_end_of_file(terminal: TerminalTool) -> None:
    cat = await run(terminal, "cat", timeout=10)
    assert (cat.timed_out, cat.exit_code, cat.output) == (False, 0, "")
    read = await run(terminal, "read answer; echo status=$? answer=$answer", timeout=10)
    assert read.timed_out is False
    assert read.output == "status=1 answer=\n"
    python = await run(terminal, "python3 -c 'input()'", timeout=10)
    assert python.timed_out is False
    assert "EOFError" in python.output


async def test_timeout_interrupts_the_command_not_the_shell(terminal: TerminalTool) -> None:
    await run(terminal, "export KEPT=yes; cd /tmp")
    result = await run(terminal, "echo started; sleep 60; echo never", timeout=1)
    assert result.timed_out
    assert result.exit_code == 130
    assert result.output.startswith("started\n")
    assert "never" not in result.output
    assert "timed out after 1 s and was interrupted (Ctrl-C)" in result.output
    after = await run(terminal, "echo $KEPT; pwd")
    assert after.output == "yes\n/tmp\n"
    assert not after.timed_out


async def test_a_shell_started_with_signals_ignored_still_interrupts_on_timeout(
    terminal: TerminalTool,
) -> None:
    """A server started in the background (``&``, nohup, CI) inherits SIGINT ignored; the
    shell it starts must not pass that on, or every timeout becomes a kill."""
    with inherited_signals():  # the shell starts now, as under such a server
        await run(terminal, "export KEPT=yes")
    status = await run(terminal, "grep ^Sig /proc/self/status")
    assert signal_state(status.output) == SignalState(frozenset(), frozenset())
    result = await run(terminal, "echo started; sleep 60; echo never", timeout=1)
    assert result.timed_out
    assert result.exit_code == 130
    assert "timed out after 1 s and was interrupted (Ctrl-C)" in result.output
    assert "never" not in result.output
    after = await run(terminal, "echo $KEPT")
    assert after.output == "yes\n"


async def test_timeout_breaks_shell_loops(terminal: TerminalTool) -> None:
    await run(terminal, "COUNT=0")
    result = await run(terminal, "while true; do COUNT=$((COUNT+1)); done", timeout=1)
    assert result.timed_out
    after = await run(terminal, "[ $COUNT -gt 0 ] && echo counted")
    assert after.output == "counted\n"


async def test_timeout_kills_a_command_that_ignores_ctrl_c(terminal: TerminalTool) -> None:
    await run(terminal, "export KEPT=yes")
    result = await run(terminal, "trap '' INT; echo stubborn; sleep 60", timeout=1)
    assert result.timed_out
    assert result.output.startswith("stubborn\n")
    assert "ignored Ctrl-C and was killed" in result.output
    after = await run(terminal, "echo $KEPT")
    assert after.output == "yes\n"
    loop = await run(terminal, "while true; do :; done", timeout=1)
    assert "interrupted (Ctrl-C)" in loop.output  # the shell's INT handling is back


async def test_long_output_keeps_head_and_tail(terminal: TerminalTool) -> None:
    result = await run(terminal, "seq 1 20000")
    assert result.truncated
    assert result.exit_code == 0
    assert result.output.startswith("1\n2\n3\n")
    assert result.output.endswith("19999\n20000\n")
    assert "characters cut from the middle of this output (108894 in all)" in result.output
    assert len(result.output) < 1200


async def test_huge_output_is_capped_while_capturing(terminal: TerminalTool) -> None:
    result = await run(terminal, "head -c 3000000 /dev/zero | tr '\\0' 'x'; echo; echo END")
    assert result.truncated
    assert result.output.startswith("x" * 400)
    assert result.output.endswith("x\nEND\n")
    assert "(3000005 in all)" in result.output


async def test_secrets_are_in_the_environment_and_runtime_keys_are_not(
    terminal: TerminalTool,
) -> None:
    result = await run(terminal, 'echo "$WAREHOUSE_TOKEN"; echo "[${JUPYTER_CONVO_SESSION_KEY}]"')
    assert result.output == "tok-123456789\n[]\n"


async def test_exit_restarts_the_shell_and_says_so(terminal: TerminalTool, root: Path) -> None:
    await run(terminal, "cd /tmp; export GONE=1")
    first_pid = shell_pid(terminal)
    result = await run(terminal, "echo bye; exit 3")
    assert result.exit_code == 3
    assert result.output.startswith("bye\n")
    assert "the shell exited with code 3; a new shell was started in" in result.output
    assert shell_pid(terminal) != first_pid
    after = await run(terminal, 'pwd; echo "[$GONE]"')
    assert after.output == f"{root}\n[]\n"
    await wait_gone(first_pid)


async def test_a_shell_killed_between_commands_is_replaced(
    terminal: TerminalTool, root: Path
) -> None:
    await run(terminal, "true")
    pid = shell_pid(terminal)
    os.kill(pid, signal.SIGKILL)
    assert terminal._session is not None
    assert await terminal._session.wait_exited(GONE_TIMEOUT) == -signal.SIGKILL
    result = await run(terminal, "pwd")
    assert result.output.startswith(f"{root}\n")
    assert "the previous shell had exited; a new shell was started" in result.output
    assert shell_pid(terminal) != pid


async def test_a_shell_killed_during_a_command_is_reported(
    terminal: TerminalTool, root: Path
) -> None:
    result = await run(terminal, "echo dying; kill -9 $$")
    assert result.output.startswith("dying\n")
    assert "the shell was killed by signal 9; a new shell was started" in result.output
    assert result.exit_code == 137
    assert (await run(terminal, "pwd")).output == f"{root}\n"


async def test_close_ends_the_shell_and_its_background_jobs(root: Path) -> None:
    tool = TerminalTool(Workspace(root), AgentSettings(command_timeout=20))
    started = await run(tool, "sleep 300 >/dev/null 2>&1 & echo $!")
    job = int(started.output.strip())
    shell = shell_pid(tool)
    assert not _gone(job)
    await tool.close()
    await wait_gone(shell)
    await wait_gone(job)


async def test_survives_the_agent_cleaning_tmp(terminal: TerminalTool) -> None:
    await run(terminal, "export KEPT=yes")
    assert terminal._session is not None
    private = terminal._session._dir
    assert private is not None
    await run(terminal, f"rm -rf {private}")
    result = await run(terminal, "echo $KEPT")
    assert result.output == "yes\n"
