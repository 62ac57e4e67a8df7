"""The ``python`` tool: code cells in a Jupyter kernel whose state persists between calls."""

from __future__ import annotations

import logging
import os
from typing import Any

from ...events.schema import ActionBase, PythonError, PythonEvent, PythonOutputEvent
from ..confine import Confiner
from ..settings import AgentSettings
from ..workspace import Workspace
from .args import (
    SECURITY_RISK_PROPERTY,
    function_spec,
    optional_timeout,
    required_str,
    security_risk,
    timeout_property,
)
from .base import Tool
from .env import agent_environment
from .kernel_session import KernelRun, KernelSession, KernelStartError
from .text import clean_terminal_output, truncate_middle

log = logging.getLogger(__name__)

DESCRIPTION = """\
Run Python code in a Jupyter kernel (IPython) whose working directory is the workspace, \
the folder shared with the user's notebook. Like notebook cells, calls share one session: \
variables, imports and loaded data stay, so load a dataset once and build on it.
You get printed output, the value of the last expression as rich output (a pandas \
DataFrame comes as an HTML table and as text), displayed figures (matplotlib figures \
arrive as PNG images at the end of the call, or where you call plt.show()), and errors \
with their traceback. IPython features work: %pip install, %timeit, !shell commands. \
input() is not available.
Print compact summaries (df.shape, df.head(), df.describe(), value_counts()) rather than \
whole large objects: long text output is cut in the middle. Each call has a time limit \
({timeout:g} s unless you set `timeout`); when it runs out the kernel is interrupted \
(KeyboardInterrupt) and keeps its variables.\
"""

# MIME types kept whole however large: images are what they are.
KEEP_WHOLE_PREFIXES = ("image/",)


class PythonTool(Tool):
    """Runs ``python`` actions in a lazily started (or connected) ``KernelSession``."""

    name = "python"

    def __init__(
        self, workspace: Workspace, settings: AgentSettings, confiner: Confiner | None = None
    ) -> None:
        self.workspace = workspace
        self.settings = settings
        base = confiner.environment(os.environ) if confiner is not None else None
        self.session = KernelSession(
            cwd=workspace.root,
            env=agent_environment(settings, base),
            connection_file=settings.kernel_connection_file,
            confiner=confiner,
        )

    def spec(self) -> dict[str, Any]:
        return function_spec(
            self.name,
            DESCRIPTION.format(timeout=self.settings.python_timeout),
            {
                "code": {
                    "type": "string",
                    "description": "The Python code to run, as in one notebook cell.",
                },
                "timeout": timeout_property(self.settings.python_timeout, "code"),
                "security_risk": SECURITY_RISK_PROPERTY,
            },
            ["code", "security_risk"],
        )

    def parse(self, arguments: dict[str, Any], *, tool_call_id: str | None) -> PythonEvent:
        return PythonEvent(
            code=required_str(arguments, "code"),
            timeout=optional_timeout(arguments),
            security_risk=security_risk(arguments),
            tool_call_id=tool_call_id,
        )

    async def execute(self, action: ActionBase) -> PythonOutputEvent:
        if not isinstance(action, PythonEvent):
            raise TypeError(f"python cannot execute a {action.kind!r} action")
        timeout = action.timeout or self.settings.python_timeout
        try:
            run = await self.session.execute(action.code, timeout)
        except KernelStartError as exc:
            log.warning("python: %s", exc)
            return PythonOutputEvent(
                error=PythonError(ename="KernelStartError", evalue=str(exc)),
                tool_call_id=action.tool_call_id,
            )
        return self._observation(run, action.tool_call_id)

    def _observation(self, run: KernelRun, tool_call_id: str | None) -> PythonOutputEvent:
        limit = self.settings.max_output_chars
        stdout, cut_out = truncate_middle(clean_terminal_output(run.stdout), limit)
        stderr, cut_err = truncate_middle(clean_terminal_output(run.stderr), limit)
        if run.notes:
            separator = "" if not stderr or stderr.endswith("\n") else "\n"
            stderr = stderr + separator + "\n".join(run.notes)
        result, cut_result = (None, False) if run.result is None else _fit(run.result, limit)
        displays = [_fit(bundle, limit) for bundle in run.display_data]
        error = None
        cut_traceback = False
        if run.error is not None:
            ename, evalue, traceback = run.error
            joined = "\n".join(traceback)
            if len(joined) > limit:
                traceback, cut_traceback = [truncate_middle(joined, limit)[0]], True
            error = PythonError(ename=ename, evalue=evalue, traceback=traceback)
        return PythonOutputEvent(
            stdout=stdout,
            stderr=stderr,
            result=result,
            display_data=[bundle for bundle, _ in displays],
            error=error,
            execution_count=run.execution_count,
            truncated=(
                cut_out or cut_err or cut_result or cut_traceback or any(cut for _, cut in displays)
            ),
            timed_out=run.timed_out,
            tool_call_id=tool_call_id,
        )

    async def close(self) -> None:
        await self.session.close()


def _fit(bundle: dict[str, Any], limit: int) -> tuple[dict[str, Any], bool]:
    """``bundle`` with its long text representations cut; images are kept whole."""
    fitted: dict[str, Any] = {}
    cut_any = False
    for mime, value in bundle.items():
        if isinstance(value, str) and not mime.startswith(KEEP_WHOLE_PREFIXES):
            value, cut = truncate_middle(value, limit)
            cut_any = cut_any or cut
        fitted[mime] = value
    return fitted, cut_any
