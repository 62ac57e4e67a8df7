"""Agent step overhead: what the controller itself costs per step, apart from LLM and tools.

A real ``AgentController`` (real EventLog, LLMClient over the openai SDK, tools) runs
steps of one ``think`` call each against the scripted LLM. The LLM client and the tools are
wrapped in timers, so for each step

    overhead = (start of LLM call k+1) - (end of LLM call k) - (tool time in step k)

which is logging the answer, its actions and observations, the stuck check, and building
the next request from the log. The controller re-reads the whole log each step, so this is
measured with the log pre-filled to several lengths; ``log.read()`` and ``build_messages``
are timed alone at each length to show where growth comes from. The LLM round trip
(openai SDK + scripted server over HTTP) is reported separately.

    python bench/bench_step.py [--quick] [--steps 30] [--prefill 0 1000 10000]

Target (from the issue): step overhead <= 2 ms. Printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from _stats import Figure, markdown_table, measure
from bench_events import events as sample_events

from jupyter_convo.agent.controller import AgentController
from jupyter_convo.agent.history import build_messages
from jupyter_convo.agent.llm import LLMClient, LLMResponse
from jupyter_convo.agent.prompts import system_prompt
from jupyter_convo.agent.settings import AgentSettings
from jupyter_convo.agent.tools import build_tools
from jupyter_convo.agent.workspace import Workspace
from jupyter_convo.events.log import EventLog
from jupyter_convo.events.redact import SecretRegistry
from jupyter_convo.events.schema import AgentState
from jupyter_convo.testing import ScriptedLLM, llm_config_for, reply, tool_call

STEP_TARGET = 2e-3
WAIT = 600.0


class TimedLLM:
    """The real LLM client, with the start and end of every ``complete`` noted."""

    def __init__(self, client: LLMClient) -> None:
        self.client = client
        self.calls: list[tuple[float, float]] = []

    async def complete(self, *args: Any, **kwargs: Any) -> LLMResponse:
        start = time.perf_counter()
        try:
            return await self.client.complete(*args, **kwargs)
        finally:
            self.calls.append((start, time.perf_counter()))

    async def close(self) -> None:
        await self.client.close()


def timed_tool(execute: Callable[..., Awaitable[Any]], spent: list[tuple[float, float]]) -> Any:
    async def run(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return await execute(*args, **kwargs)
        finally:
            spent.append((start, time.perf_counter()))

    return run


async def run_steps(llm: ScriptedLLM, root: Path, prefill: int, steps: int) -> dict[str, Any]:
    name = f"step-bench-{prefill}-{time.monotonic_ns()}"
    prefilled = sample_events(prefill)
    # The scripted LLM picks its step by the assistant messages in the request, and its
    # script by the first user message: pad for the pre-filled history, match its text.
    history = build_messages(
        [event.model_copy(update={"id": n}) for n, event in enumerate(prefilled)],
        system_prompt="",
    )
    padding = sum(1 for message in history if message.get("role") == "assistant")
    first_user = next((m["content"] for m in history if m.get("role") == "user"), name)
    llm.add_script(
        [reply("(pre-filled)")] * padding
        + [tool_call("think", {"thought": f"{name} thought {n}"}) for n in range(steps)]
        + [reply("done")],
        match=first_user if prefill else name,
    )
    directory = root / name
    settings = AgentSettings(
        llm=llm_config_for(llm, stream=False), max_iterations=steps + 5, stuck_detection=True
    )
    workspace = Workspace(directory / "workspace")
    secrets = SecretRegistry()
    log = EventLog(directory / "events.jsonl", secrets=secrets)
    for event in prefilled:
        log.append(event)
    timed = TimedLLM(LLMClient(settings.llm, secrets=secrets))
    tools = build_tools(workspace, settings)
    tool_spans: list[tuple[float, float]] = []
    for tool in tools:
        tool.execute = timed_tool(tool.execute, tool_spans)  # type: ignore[method-assign]
    controller = AgentController(
        log=log,
        llm=timed,  # type: ignore[arg-type]
        tools=tools,
        settings=settings,
        workspace=workspace,
    )
    try:
        await controller.start(name)
        state = await controller.wait_for_state(
            AgentState.AWAITING_USER_INPUT, AgentState.ERROR, timeout=WAIT
        )
        if state is AgentState.ERROR:
            raise RuntimeError(f"the agent failed: {[e for e in log.read() if e.kind == 'error']}")
        overheads = []
        for (_, end), (next_start, _) in zip(timed.calls, timed.calls[1:], strict=False):
            tools_time = sum(b - a for a, b in tool_spans if end <= a < next_start)
            overheads.append(next_start - end - tools_time)
        round_trips = [end - start for start, end in timed.calls]
        events = log.read()
        prompt = system_prompt(workspace=str(workspace.root))
        read_times = measure(log.read, repeat=10)
        build_times = measure(
            lambda: build_messages(events, system_prompt=prompt, max_chars=30_000), repeat=10
        )
        return {
            "prefill": prefill,
            "overheads": overheads,
            "round_trips": round_trips,
            "read": read_times,
            "build": build_times,
            "events": len(events),
        }
    finally:
        await controller.close()
        await timed.close()
        log.close()


async def main_async(args: argparse.Namespace) -> None:
    llm = ScriptedLLM()
    with llm.serve(), tempfile.TemporaryDirectory(prefix="bench-step-") as tmp:
        await run_steps(llm, Path(tmp), 0, 3)  # warm-up: imports, first connection
        results = [await run_steps(llm, Path(tmp), n, args.steps) for n in args.prefill]
    figures: list[Figure] = []
    for result in results:
        n = result["prefill"]
        figures.append(
            Figure(f"step overhead, log of {n:,} + steps", result["overheads"], "step", STEP_TARGET)
        )
    for result in results:
        n = result["prefill"]
        figures.append(
            Figure(f"  log.read() of ~{result['events']:,} events", result["read"], "step")
        )
        figures.append(
            Figure(f"  build_messages of ~{result['events']:,} events", result["build"], "step")
        )
        figures.append(
            Figure(
                f"  LLM round trip (SDK + scripted server), log of {n:,}",
                result["round_trips"],
                "call",
            )
        )
    print(
        f"## Agent step overhead ({args.steps} think steps per log length; "
        "LLM and tool time excluded)\n"
    )
    print(markdown_table(figures))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps, shorter logs")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--prefill", type=int, nargs="+", default=[0, 1000, 10_000])
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.prefill = 10, [0, 1000]
    started = time.perf_counter()
    asyncio.run(main_async(args))
    print(f"\nTotal bench time: {time.perf_counter() - started:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
