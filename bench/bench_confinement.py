"""What the bubblewrap jail costs the agent's tools: confined against unconfined, side by side.

Run: ``python bench/bench_confinement.py [--repeat 30] [--starts 10] [--quick]``. Prints a
Markdown table of median and p95 for each operation both ways, and the median overhead:
cold starts (a shell and its first command, a kernel and its first cell, a bare ``true``
through ``bwrap``), per-call costs (a trivial command, a trivial cell) and the one-off
check the server makes at start. Needs bubblewrap (``apt install bubblewrap``).
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
from pathlib import Path

from _stats import Figure, format_duration, measure, timed

from jupyter_convo.agent.confine import ConfinementSpec, Confiner, probe
from jupyter_convo.agent.settings import AgentSettings
from jupyter_convo.agent.tools.python import PythonTool
from jupyter_convo.agent.tools.terminal import TerminalTool
from jupyter_convo.agent.workspace import Workspace


async def tool_figures(
    jail: Confiner | None, workspace: Workspace, repeat: int, starts: int
) -> list[Figure]:
    settings = AgentSettings()
    figures: list[Figure] = []

    async def shell_start() -> None:
        tool = TerminalTool(workspace, settings, jail)
        await tool.execute(tool.parse({"command": "true"}, tool_call_id=None))
        await tool.close()

    shell_starts = await timed(shell_start, starts)
    figures.append(Figure("terminal: start shell + first command", shell_starts))
    terminal = TerminalTool(workspace, settings, jail)
    echo = terminal.parse({"command": "echo hi"}, tool_call_id=None)
    await terminal.execute(echo)
    figures.append(Figure("terminal: echo hi", await timed(lambda: terminal.execute(echo), repeat)))
    await terminal.close()

    async def kernel_start() -> None:
        tool = PythonTool(workspace, settings, jail)
        await tool.execute(tool.parse({"code": "1"}, tool_call_id=None))
        await tool.close()

    figures.append(Figure("python: start kernel + first cell", await timed(kernel_start, starts)))
    python = PythonTool(workspace, settings, jail)
    one = python.parse({"code": "1 + 1"}, tool_call_id=None)
    await python.execute(one)
    figures.append(Figure("python: 1 + 1", await timed(lambda: python.execute(one), repeat)))
    await python.close()
    return figures


def process_figure(jail: Confiner | None, workspace: Path, repeat: int) -> Figure:
    argv = ["true"] if jail is None else jail.command(["true"], cwd=workspace)
    return Figure(
        "a process: true", measure(lambda: subprocess.run(argv, check=True), repeat=repeat)
    )


def signed(seconds: float) -> str:
    return ("-" if seconds < 0 else "+") + format_duration(abs(seconds))


def side_by_side(plain: list[Figure], confined: list[Figure]) -> str:
    rows = [
        "| operation | unconfined median | unconfined p95 | confined median | confined p95 "
        "| overhead (median) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for a, b in zip(plain, confined, strict=True):
        rows.append(
            f"| {a.name} | {format_duration(a.median)} | {format_duration(a.p95)} "
            f"| {format_duration(b.median)} | {format_duration(b.p95)} "
            f"| {signed(b.median - a.median)} |"
        )
    return "\n".join(rows)


async def bench(repeat: int, starts: int) -> str:
    bwrap, reason = probe("bwrap")
    if bwrap is None:
        raise SystemExit(f"bench_confinement needs bubblewrap: {reason}")
    check = measure(lambda: probe("bwrap"), repeat=max(3, starts))
    with tempfile.TemporaryDirectory() as tmp:
        conversation = Path(tmp) / "conversations" / "bench"
        workspace = Workspace(conversation / "workspace")
        jail = Confiner(
            ConfinementSpec(mechanism="bubblewrap", bwrap=bwrap, hidden_paths=[tmp]),
            workspace=workspace.root,
            directory=conversation,
        )
        plain = [process_figure(None, workspace.root, repeat)]
        confined = [process_figure(jail, workspace.root, repeat)]
        plain += await tool_figures(None, workspace, repeat, starts)
        confined += await tool_figures(jail, workspace, repeat, starts)
    table = side_by_side(plain, confined)
    once = Figure("server start: check that bubblewrap can jail", check)
    return (
        f"{table}\n\nOnce per server: {once.name}: median {format_duration(once.median)}, "
        f"p95 {format_duration(once.p95)}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=30, help="runs of each per-call figure")
    parser.add_argument("--starts", type=int, default=10, help="runs of each cold start")
    parser.add_argument("--quick", action="store_true", help="a smoke run (5 and 2 runs)")
    args = parser.parse_args(argv)
    repeat, starts = (5, 2) if args.quick else (args.repeat, args.starts)
    print(asyncio.run(bench(repeat, starts)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
