"""The python tool against real ipykernel kernels: state, rich outputs, errors,
interrupts, a dying kernel, and running in a kernel someone else owns."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from jupyter_client.manager import AsyncKernelManager
from pydantic import SecretStr
from signal_helpers import SignalState, inherited_signals, process_signal_state, signal_state

from jupyter_convo.agent.settings import AgentSettings
from jupyter_convo.agent.tools.python import PythonTool
from jupyter_convo.agent.workspace import Workspace
from jupyter_convo.events.schema import PythonOutputEvent

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
GONE_TIMEOUT = 15.0


def make_tool(root: Path, **settings: Any) -> PythonTool:
    values: dict[str, Any] = {"python_timeout": 60, "max_output_chars": 1000}
    values.update(settings)
    return PythonTool(Workspace(root), AgentSettings(**values))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PythonTool]:
    """One kernel for the tests that only add variables of their own."""
    root = tmp_path_factory.mktemp("workspace")
    tool = make_tool(root, secrets={"WAREHOUSE_TOKEN": SecretStr("tok-123456789")})
    yield tool
    pid = tool.session.kernel_pid
    await tool.close()
    if pid is not None:
        await wait_gone(pid)


async def run(tool: PythonTool, code: str, **args: Any) -> PythonOutputEvent:
    action = tool.parse({"code": code, **args}, tool_call_id="call")
    result = await tool.execute(action)
    assert result.tool_call_id == "call"
    return result


async def wait_gone(pid: int) -> None:
    """Wait until process ``pid`` no longer exists (reaped, not a zombie)."""
    deadline = asyncio.get_running_loop().time() + GONE_TIMEOUT
    while _exists(pid):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"kernel process {pid} still exists {GONE_TIMEOUT} s after close")
        await asyncio.sleep(0.05)


def _exists(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}")


async def test_state_survives_between_calls(shared: PythonTool) -> None:
    first = await run(shared, "revenue = [120, 80, 200]\nprint(len(revenue))")
    assert first.stdout == "3\n"
    assert first.result is None
    second = await run(shared, "sum(revenue)")
    assert second.result == {"text/plain": "400"}
    assert second.execution_count is not None
    assert first.execution_count is not None
    assert second.execution_count == first.execution_count + 1
    assert second.error is None


async def test_runs_in_the_workspace_with_the_secrets(shared: PythonTool) -> None:
    result = await run(
        shared,
        "import os\nprint(os.getcwd())\nprint(os.environ['WAREHOUSE_TOKEN'])\n"
        "print(os.environ.get('JUPYTER_CONVO_SESSION_KEY'))",
    )
    assert result.stdout == f"{shared.workspace.root}\ntok-123456789\nNone\n"


async def test_stdout_and_stderr_are_separate(shared: PythonTool) -> None:
    result = await run(shared, "import sys\nprint('out')\nprint('err', file=sys.stderr)")
    assert result.stdout == "out\n"
    assert result.stderr == "err\n"


async def test_matplotlib_figure_arrives_as_png(shared: PythonTool) -> None:
    result = await run(
        shared,
        "import matplotlib.pyplot as plt\nfig, ax = plt.subplots()\nax.plot([1, 3, 2])\nNone",
    )
    assert result.error is None
    pngs = [bundle["image/png"] for bundle in result.display_data if "image/png" in bundle]
    assert len(pngs) == 1
    assert base64.b64decode(pngs[0]).startswith(PNG_MAGIC)
    assert len(pngs[0]) > 1000  # larger than max_output_chars: images are never cut
    assert not result.truncated


async def test_dataframe_result_is_a_mime_bundle_with_html(shared: PythonTool) -> None:
    result = await run(
        shared, "import pandas as pd\npd.DataFrame({'month': ['jan', 'feb'], 'sales': [3, 4]})"
    )
    assert result.result is not None
    assert "<table" in result.result["text/html"]
    assert "month" in result.result["text/plain"]


async def test_exception_with_clean_traceback(shared: PythonTool) -> None:
    result = await run(shared, "def ratio(a, b):\n    return a / b\nratio(1, 0)")
    assert result.error is not None
    assert result.error.ename == "ZeroDivisionError"
    assert result.error.evalue == "division by zero"
    text = "\n".join(result.error.traceback)
    assert "ratio(1, 0)" in text
    assert "return a / b" in text
    assert "\x1b" not in text


async def test_input_fails_instead_of_hanging(shared: PythonTool) -> None:
    result = await run(shared, "input('name? ')", timeout=20)
    assert not result.timed_out
    assert result.error is not None
    assert result.error.ename == "StdinNotImplementedError"


async def test_long_text_output_is_truncated(shared: PythonTool) -> None:
    result = await run(shared, "print('\\n'.join(str(n) for n in range(5000)))\n'y' * 5000")
    assert result.truncated
    assert result.stdout.startswith("0\n1\n2\n")
    assert result.stdout.endswith("4998\n4999\n")
    assert "characters cut from the middle" in result.stdout
    assert result.result is not None
    assert "characters cut from the middle" in result.result["text/plain"]


async def test_timeout_interrupts_and_keeps_state(shared: PythonTool) -> None:
    await run(shared, "kept = 'still here'")
    result = await run(
        shared,
        "import time\nprint('working', flush=True)\ntime.sleep(60)\nprint('never')",
        timeout=1,
    )
    assert result.timed_out
    assert result.stdout == "working\n"
    assert result.error is not None
    assert result.error.ename == "KeyboardInterrupt"
    assert "kernel was interrupted and keeps its variables" in result.stderr
    after = await run(shared, "kept")
    assert after.result == {"text/plain": "'still here'"}
    assert not after.timed_out


async def test_a_kernel_started_with_signals_ignored_gets_default_signal_handling(
    tmp_path: Path,
) -> None:
    """A runtime started in the background inherits ignored signals and a blocked mask;
    the kernel it starts (and what the agent's code starts in it) must not."""
    tool = make_tool(tmp_path)
    try:
        with inherited_signals():  # the kernel starts now, as under such a runtime
            await run(tool, "kept = 'still here'")
        pid = tool.session.kernel_pid
        assert pid is not None
        kernel = process_signal_state(pid)
        assert kernel.blocked == frozenset()
        # ipykernel ignores SIGINT between executions, Python ignores SIGPIPE and SIGXFSZ.
        assert kernel.ignored <= {signal.SIGINT, signal.SIGPIPE, signal.SIGXFSZ}
        child = await run(
            tool,
            "import subprocess\n"
            "print(subprocess.run(['grep', '^Sig', '/proc/self/status'], capture_output=True, "
            "text=True).stdout)",
        )
        assert signal_state(child.stdout) == SignalState(frozenset(), frozenset())
        interrupted = await run(tool, "import time\ntime.sleep(60)", timeout=1)
        assert interrupted.timed_out
        assert interrupted.error is not None
        assert interrupted.error.ename == "KeyboardInterrupt"
        after = await run(tool, "kept")
        assert after.result == {"text/plain": "'still here'"}
    finally:
        pid = tool.session.kernel_pid
        await tool.close()
        if pid is not None:
            await wait_gone(pid)


async def test_a_dead_kernel_is_reported_and_replaced(tmp_path: Path) -> None:
    tool = make_tool(tmp_path)
    try:
        await run(tool, "lost = 1")
        first_pid = tool.session.kernel_pid
        assert first_pid is not None
        died = await run(tool, "import os\nos._exit(1)")
        assert died.error is not None
        assert died.error.ename == "DeadKernelError"
        assert "kernel died" in died.stderr
        await wait_gone(first_pid)
        after = await run(tool, "'lost' in globals()")
        assert after.result == {"text/plain": "False"}
        assert tool.session.kernel_pid not in (None, first_pid)
    finally:
        pid = tool.session.kernel_pid
        await tool.close()
        if pid is not None:
            await wait_gone(pid)


@pytest_asyncio.fixture(loop_scope="module")
async def notebook_kernel(tmp_path: Path) -> AsyncIterator[AsyncKernelManager]:
    """A kernel someone else owns (as a notebook's would be)."""
    manager = AsyncKernelManager(kernel_name="python3")
    await manager.start_kernel(cwd=str(tmp_path))
    yield manager
    await manager.shutdown_kernel(now=True)


async def test_connects_to_an_existing_kernel_and_leaves_it_running(
    notebook_kernel: AsyncKernelManager, tmp_path: Path
) -> None:
    tool = make_tool(tmp_path, kernel_connection_file=notebook_kernel.connection_file)
    await run(tool, "from_agent = 41")
    result = await run(tool, "from_agent + 1")
    assert result.result == {"text/plain": "42"}
    assert tool.session.kernel_pid is None  # not ours
    interrupted = await run(tool, "import time\ntime.sleep(60)", timeout=1)
    assert interrupted.timed_out
    assert interrupted.error is not None
    assert interrupted.error.ename == "KeyboardInterrupt"
    await tool.close()
    assert await notebook_kernel.is_alive()
    # The kernel kept what the agent did, for the notebook to use.
    client = notebook_kernel.client()
    client.start_channels()
    try:
        reply = await client.execute(
            "from_agent", user_expressions={"v": "from_agent"}, reply=True, timeout=30
        )
        assert reply["content"]["user_expressions"]["v"]["data"]["text/plain"] == "41"
    finally:
        client.stop_channels()


async def test_a_missing_connection_file_is_an_observation(tmp_path: Path) -> None:
    tool = make_tool(tmp_path, kernel_connection_file=str(tmp_path / "gone.json"))
    result = await run(tool, "1")
    assert result.error is not None
    assert result.error.ename == "KernelStartError"
    assert "gone.json" in result.error.evalue
    await tool.close()
