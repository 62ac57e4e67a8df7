"""How long the agent's tools take per call, apart from the work the call asks for.

Run: ``python bench/bench_tools.py [--repeat 30]``. Prints a Markdown table of median and
p95: shell and kernel start-up, a trivial terminal command and Python cell (the tools'
own overhead), a 100,000-line command output (capture, cleaning, truncation), a
matplotlib figure, and a file_editor view and str_replace.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

from _stats import Figure, markdown_table, timed

from jupyter_convo.agent.settings import AgentSettings
from jupyter_convo.agent.tools.file_editor import FileEditorTool
from jupyter_convo.agent.tools.python import PythonTool
from jupyter_convo.agent.tools.terminal import TerminalTool
from jupyter_convo.agent.workspace import Workspace


async def bench(repeat: int) -> list[Figure]:
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory() as tmp:
        workspace = Workspace(tmp)
        settings = AgentSettings()

        async def shell_start() -> None:
            tool = TerminalTool(workspace, settings)
            await tool.execute(tool.parse({"command": "true"}, tool_call_id=None))
            await tool.close()

        figures.append(
            Figure("terminal: start shell + first command", await timed(shell_start, 10))
        )

        terminal = TerminalTool(workspace, settings)
        echo = terminal.parse({"command": "echo hi"}, tool_call_id=None)
        seq = terminal.parse({"command": "seq 1 100000"}, tool_call_id=None)
        figures.append(
            Figure("terminal: echo", await timed(lambda: terminal.execute(echo), repeat))
        )
        figures.append(
            Figure("terminal: seq 1 100000", await timed(lambda: terminal.execute(seq), repeat))
        )
        await terminal.close()

        async def kernel_start() -> None:
            tool = PythonTool(workspace, settings)
            await tool.execute(tool.parse({"code": "1"}, tool_call_id=None))
            await tool.close()

        figures.append(Figure("python: start kernel + first cell", await timed(kernel_start, 5)))

        python = PythonTool(workspace, settings)
        one = python.parse({"code": "1 + 1"}, tool_call_id=None)
        plot = python.parse(
            {"code": "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()"},
            tool_call_id=None,
        )
        await python.execute(plot)  # import matplotlib once, untimed
        figures.append(Figure("python: 1 + 1", await timed(lambda: python.execute(one), repeat)))
        figures.append(
            Figure("python: matplotlib figure", await timed(lambda: python.execute(plot), repeat))
        )
        await python.close()

        editor = FileEditorTool(workspace, settings)
        lines = "".join(f"value_{n} = {n}\n" for n in range(2000))
        (Path(tmp) / "module.py").write_text(lines)
        view = editor.parse({"command": "view", "path": "module.py"}, tool_call_id=None)
        forth = editor.parse(
            {"command": "str_replace", "path": "module.py", "old_str": "= 1999", "new_str": "= 0"},
            tool_call_id=None,
        )
        back = editor.parse(
            {
                "command": "str_replace",
                "path": "module.py",
                "old_str": "= 0\n",
                "new_str": "= 1999\n",
            },
            tool_call_id=None,
        )

        async def replace_twice() -> None:
            await editor.execute(forth)
            await editor.execute(back)

        figures.append(
            Figure(
                "file_editor: view 2000 lines", await timed(lambda: editor.execute(view), repeat)
            )
        )
        figures.append(
            Figure(
                "file_editor: str_replace",
                [t / 2 for t in await timed(replace_twice, repeat)],
            )
        )
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args(argv)
    figures = asyncio.run(bench(args.repeat))
    print(markdown_table(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
