"""Export, import and replay: time and size for a large conversation; replay overhead per step.

    python bench/bench_share.py [--events 10000] [--repeat 5] [--steps 40]

- export / import: a synthetic 10,000-event conversation (LLM calls, thoughts, commands and
  outputs, ~1 KB per step) with one cassette entry per LLM call (each request carrying the
  last 20 messages, as a long run would). Export packs it (redaction and secret scan
  included), import validates and unpacks it into a fresh folder with a real SQLite store.
- replay overhead: a run of N cheap steps (file views and small edits, ``echo`` commands)
  recorded with the real tools, then replayed in both modes. Overhead per step = (replay
  time - the same actions run directly with the same tools) / N: what the replay adds
  (copying events, comparing normalised observations, logging verdicts; in cassette mode
  the real agent loop as well).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _stats import Figure, format_duration, markdown_table

from jupyter_convo.agent.cassette import Cassette
from jupyter_convo.agent.history import tool_call_for
from jupyter_convo.agent.llm import LLMClient, LLMResponse, ToolCall
from jupyter_convo.agent.settings import AgentSettings
from jupyter_convo.agent.tools import build_tools
from jupyter_convo.agent.workspace import Workspace
from jupyter_convo.events.log import EventLog
from jupyter_convo.events.redact import SecretRegistry
from jupyter_convo.events.schema import (
    ActionBase,
    CommandEvent,
    CommandOutputEvent,
    EventBase,
    FileEditEvent,
    FileReadEvent,
    LLMCallEvent,
    MessageEvent,
    ThinkEvent,
)
from jupyter_convo.share.export import export_bytes
from jupyter_convo.share.importer import import_conversation
from jupyter_convo.share.replay import run_replay
from jupyter_convo.share.source import source_from_conversation
from jupyter_convo.store.conversations import ConversationStore

# --- a large conversation ------------------------------------------------------------------


def big_conversation(directory: Path, n_events: int) -> None:
    """``n_events`` events and one cassette entry per LLM call, written to ``directory``."""
    log = EventLog(directory / "events.jsonl")
    cassette = Cassette(directory / "cassette.jsonl")
    log.append(MessageEvent(source="user", text="clean sales.csv and plot revenue by month"))
    history: list[dict[str, object]] = []
    step = 0
    while len(log) < n_events:
        output = "   month  revenue\n0  2024-01   1200.5\n" * 12
        command = f"python -c 'import pandas; print(pandas.read_csv(\"s{step}.csv\"))'"
        events: list[EventBase] = [
            LLMCallEvent(model="gpt-4o-mini", prompt_tokens=1200 + step, completion_tokens=80),
            ThinkEvent(thought=f"Step {step}: look at the columns of sales.csv again"),
            CommandEvent(command=command, tool_call_id=f"call_{step}"),
        ]
        for event in events:
            logged = log.append(event)
        log.append(CommandOutputEvent(cause=logged.id, exit_code=0, output=output))
        history += [
            {"role": "assistant", "content": None, "tool_calls": [{"id": f"call_{step}"}]},
            {"role": "tool", "tool_call_id": f"call_{step}", "content": output},
        ]
        response = LLMResponse(
            tool_calls=[ToolCall(id=f"call_{step}", name="terminal", arguments=command)],
            prompt_tokens=1200,
            completion_tokens=80,
        )
        cassette.record(
            {"model": "gpt-4o-mini", "messages": history[-20:], "tools": None},
            response.model_dump(),
            None,
            0.8,
        )
        step += 1
    log.close()
    cassette.close()


def bench_export_import(n_events: int, repeat: int) -> tuple[list[Figure], list[str]]:
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-share-") as tmp:
        root = Path(tmp)
        source = root / "conversations" / "big"
        big_conversation(source, n_events)
        raw = sum(f.stat().st_size for f in source.iterdir() if f.is_file())
        secrets = SecretRegistry(["sk-bench-not-in-the-log-0123456789", "ghp_another_token_42"])
        exports: list[float] = []
        data = b""
        for _ in range(repeat):
            started = time.perf_counter()
            data = export_bytes(source, secrets=secrets)
            exports.append(time.perf_counter() - started)
        imports: list[float] = []
        for index in range(repeat):
            target = root / f"import-{index}"
            store = ConversationStore(target / "convo.db")
            started = time.perf_counter()
            import_conversation(io.BytesIO(data), target / "conversations", store=store)
            imports.append(time.perf_counter() - started)
            store.close()
        notes.append(
            f"- {n_events:,} events + {n_events // 4:,} cassette entries: "
            f"{raw / 1e6:.1f} MB on disk, export zip {len(data) / 1e6:.2f} MB "
            f"({raw / len(data):.1f}x smaller)"
        )
        figures = [
            Figure(f"export {n_events:,} events", exports, per="conversation"),
            Figure(f"import {n_events:,} events", imports, per="conversation"),
        ]
    return figures, notes


# --- replay overhead -----------------------------------------------------------------------


def cheap_actions(n_steps: int) -> list[ActionBase]:
    actions: list[ActionBase] = []
    for i in range(n_steps):
        kind = i % 3
        if kind == 0:
            actions.append(
                FileEditEvent(command="create", path=f"f{i}.txt", file_text=f"line {i}\n" * 5)
            )
        elif kind == 1:
            actions.append(FileReadEvent(path=f"f{i - 1}.txt"))
        else:
            actions.append(CommandEvent(command=f"echo step {i}"))
    return [
        a.model_copy(update={"tool_call_id": f"call_{i}", "security_risk": "low"})
        for i, a in enumerate(actions)
    ]


async def run_directly(directory: Path, actions: list[ActionBase]) -> float:
    """The actions executed with the tools and logged as a run would: the baseline (s)."""
    settings = AgentSettings()
    workspace = Workspace(directory / "workspace")
    tools = {tool.name: tool for tool in build_tools(workspace, settings)}
    names = {"file_edit": "file_editor", "file_read": "file_editor", "command": "terminal"}
    log = EventLog(directory / "events.jsonl")
    cassette = Cassette(directory / "cassette.jsonl")
    log.append(MessageEvent(source="user", text="make some files"))
    await tools["terminal"].execute(CommandEvent(command="true"))  # shell started, untimed
    started = time.perf_counter()
    for action in actions:
        name, arguments = tool_call_for(action)
        call = ToolCall(id=action.tool_call_id or "", name=name, arguments=json.dumps(arguments))
        response = LLMResponse(tool_calls=[call])
        cassette.record({"model": "m", "messages": []}, response.model_dump(), None, 0.0)
        log.append(LLMCallEvent(model="m"))
        logged = log.append(action)
        observation = await tools[names[action.kind]].execute(logged)  # type: ignore[arg-type]
        assert observation is not None
        log.append(observation.model_copy(update={"cause": logged.id}))
    elapsed = time.perf_counter() - started
    for tool in tools.values():
        await tool.close()
    log.close()
    cassette.close()
    return elapsed


async def replay_once(source_dir: Path, target: Path, mode: str) -> float:
    source = source_from_conversation(source_dir)
    settings = AgentSettings(stuck_detection=False)
    workspace = Workspace(target / "workspace")
    tools = build_tools(workspace, settings)
    log = EventLog(target / "events.jsonl")
    cassette = Cassette(target / "cassette.jsonl")
    llm = LLMClient(settings.llm, environ={})
    await tools[0].execute(CommandEvent(command="true"))  # the shell started, untimed
    started = time.perf_counter()
    outcome = await run_replay(
        source,
        mode,  # type: ignore[arg-type]
        log=log,
        tools=tools,
        settings=settings,
        workspace=workspace,
        llm=llm,
        cassette=cassette,
    )
    elapsed = time.perf_counter() - started
    assert outcome.summary.diverged == 0, outcome.summary.message
    await outcome.controller.close()
    log.close()
    cassette.close()
    return elapsed


async def bench_replay(n_steps: int, repeat: int) -> tuple[list[Figure], list[str]]:
    actions = cheap_actions(n_steps)
    direct: list[float] = []
    per_mode: dict[str, list[float]] = {"actions": [], "cassette": []}
    with tempfile.TemporaryDirectory(prefix="bench-replay-") as tmp:
        root = Path(tmp)
        recorded = root / "conversations" / "recorded"
        await run_directly(recorded, actions)
        for index in range(repeat):
            direct.append(await run_directly(root / f"direct-{index}", actions))
            for mode, times in per_mode.items():
                times.append(await replay_once(recorded, root / f"{mode}-{index}", mode))
    base = statistics.median(direct)
    figures = [Figure("run the steps directly (baseline)", [t / n_steps for t in direct], "step")]
    notes = []
    for mode, times in per_mode.items():
        figures.append(Figure(f"replay ({mode})", [t / n_steps for t in times], "step"))
        overhead = [(t - base) / n_steps for t in times]
        figures.append(Figure(f"replay overhead ({mode})", overhead, "step"))
        notes.append(
            f"- {mode}: {format_duration(statistics.median(overhead))} added per step "
            f"over the {format_duration(base / n_steps)} a step takes to run directly"
        )
    return figures, notes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()
    print(
        f"# bench_share ({platform.python_implementation()} {platform.python_version()}, "
        f"{platform.machine()}, {os.cpu_count()} CPUs)\n"
    )
    figures, notes = bench_export_import(args.events, args.repeat)
    replay_figures, replay_notes = asyncio.run(bench_replay(args.steps, args.repeat))
    print(markdown_table([*figures, *replay_figures]))
    print()
    print("\n".join([*notes, *replay_notes]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
