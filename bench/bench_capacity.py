"""How many conversations this machine runs at once with the scripted LLM before errors.

A bounded ramp through ``NestedConversationManager`` (process sandbox, the server's own
manager: event relay and metadata updates included). At each level it starts conversations
until that many run, each an endless-looking loop of ``think`` steps against the scripted
LLM answering after ``--llm-delay`` seconds (a fast LLM), then watches them for
``--window`` seconds: steps made, errors (a conversation in ERROR, an agent error, a start
that failed or took longer than ``--start-limit``), the runtimes' memory. The ramp stops at
the first level with an error, or after the last level, or when ``--budget`` seconds have
passed; every runtime is stopped at the end.

    python bench/bench_capacity.py [--quick] [--levels 1 2 4 8 16 24 32 48]

Prints one row per level; the answer is the last level without errors (and the level
where each conversation's step rate falls under half of the single-conversation rate, when
the machine saturates before anything fails).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from _stats import percentile

from jupyter_convo.agent.settings import AgentSettings
from jupyter_convo.events.schema import ConversationStatus
from jupyter_convo.manager.config import ManagerConfig
from jupyter_convo.manager.nested import NestedConversationManager
from jupyter_convo.runtime.models import InitialMessage
from jupyter_convo.store.conversations import StartTaskStatus
from jupyter_convo.testing import ScriptedLLM, llm_config_for, tool_call

STEPS = 3000  # per conversation: more than a ramp can use


@dataclass
class Level:
    conversations: int
    start_p50: float
    start_max: float
    steps_per_second: float
    per_conversation: float
    rss_mb: float
    errors: list[str]


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class Ramp:
    def __init__(self, manager: NestedConversationManager, settings: AgentSettings) -> None:
        self.manager = manager
        self.settings = settings
        self.ids: list[str] = []
        self.count = 0

    async def start_one(self, limit: float) -> tuple[float, str | None]:
        """Seconds to READY, and an error (None when it started)."""
        self.count += 1
        began = time.perf_counter()
        task = await self.manager.create_conversation(
            user_id="bench", settings=self.settings, initial_message=InitialMessage(text="capacity")
        )

        async def follow() -> str | None:
            async for update in self.manager.start_task_updates(task.id):
                if update.status is StartTaskStatus.ERROR:
                    return f"start failed: {update.detail}"
            return None

        try:
            error = await asyncio.wait_for(follow(), limit)
        except asyncio.TimeoutError:
            error = f"start took over {limit:.0f} s"
        if error is not None:
            return time.perf_counter() - began, error
        assert task.conversation_id is not None
        self.ids.append(task.conversation_id)
        return time.perf_counter() - began, None

    def steps(self) -> dict[str, int]:
        metas = self.manager.store.get_many(self.ids)
        return {meta.id: meta.last_event_id for meta in metas if meta is not None}

    def errors(self) -> list[str]:
        found = []
        for meta in self.manager.store.get_many(self.ids):
            if meta is None:
                continue
            if meta.status is ConversationStatus.ERROR or meta.agent_state == "error":
                found.append(f"{meta.id[:8]}: {meta.status.value} {meta.error or ''}".strip())
        return found

    def memory(self) -> float:
        total = 0.0
        for cid in self.ids:
            try:
                record = json.loads(
                    (self.manager.conversation_dir(cid) / "runtime.json").read_text()
                )
            except (OSError, ValueError):
                continue
            total += rss_mb(int(record["pid"]))
        return total

    async def level(self, target: int, window: float, start_limit: float) -> Level:
        needed = target - len(self.ids)
        results = await asyncio.gather(*(self.start_one(start_limit) for _ in range(needed)))
        times = [seconds for seconds, _ in results] or [0.0]
        errors = [error for _, error in results if error]
        before = self.steps()
        began = time.perf_counter()
        await asyncio.sleep(window)  # a measuring window, not a wait for a condition
        elapsed = time.perf_counter() - began
        after = self.steps()
        made = sum(after[cid] - before.get(cid, after[cid]) for cid in after)
        errors += self.errors()
        return Level(
            conversations=len(self.ids),
            start_p50=statistics.median(times),
            start_max=max(times),
            steps_per_second=made / elapsed,
            per_conversation=made / elapsed / max(len(self.ids), 1),
            rss_mb=self.memory(),
            errors=errors,
        )


async def main_async(args: argparse.Namespace) -> list[Level]:
    llm = ScriptedLLM(stream_chunk_chars=10_000)
    llm.add_script(
        [
            tool_call("think", {"thought": f"capacity step {n}"}, delay=args.llm_delay)
            for n in range(STEPS)
        ],
        match="capacity",
    )
    levels: list[Level] = []
    with llm.serve(), tempfile.TemporaryDirectory(prefix="bench-capacity-") as tmp:
        settings = AgentSettings(llm=llm_config_for(llm, timeout=60.0), max_iterations=STEPS)
        manager = NestedConversationManager(
            ManagerConfig(
                data_dir=Path(tmp),
                keep_runtimes_on_shutdown=False,
                max_concurrent_conversations=max(args.levels) + 1,
                runtime_start_timeout=args.start_limit,
            )
        )
        await manager.start()
        ramp = Ramp(manager, settings)
        began = time.perf_counter()
        try:
            for target in args.levels:
                level = await ramp.level(target, args.window, args.start_limit)
                levels.append(level)
                print(
                    f"   {level.conversations} running: {level.steps_per_second:.0f} events/s, "
                    f"{len(level.errors)} error(s)",
                    file=sys.stderr,
                    flush=True,
                )
                if level.errors or time.perf_counter() - began > args.budget:
                    break
        finally:
            await manager.shutdown()
    return levels


def report(levels: list[Level], args: argparse.Namespace) -> None:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"## Capacity: concurrent running conversations ({os.cpu_count()} CPUs, load {load}; "
        f"scripted LLM answering after {args.llm_delay * 1000:.0f} ms; "
        f"{args.window:.0f} s window per level)\n"
    )
    print(
        "| running | start p50 | start max | events/s (all) | events/s per conversation "
        "| runtimes RSS (MB) | errors |"
    )
    print("|---:|---:|---:|---:|---:|---:|---|")
    for level in levels:
        errors = "; ".join(level.errors[:3]) + (" ..." if len(level.errors) > 3 else "")
        print(
            f"| {level.conversations} | {level.start_p50:.2f} s | {level.start_max:.2f} s "
            f"| {level.steps_per_second:.0f} | {level.per_conversation:.1f} "
            f"| {level.rss_mb:.0f} | {errors or 'none'} |"
        )
    clean = [level for level in levels if not level.errors]
    held = clean[-1].conversations if clean else 0
    single = levels[0].per_conversation if levels else 0.0
    saturated = next((lv for lv in levels if lv.per_conversation < single / 2), None)
    ended = "an error" if levels and levels[-1].errors else "the end of the ramp"
    print(f"\nheld without errors: {held} running conversations (the ramp stopped at {ended})")
    if saturated is not None:
        print(
            f"saturated (each conversation under half its single-conversation rate) at "
            f"{saturated.conversations} running"
        )
    starts = [lv.start_p50 for lv in levels]
    if starts:
        print(f"start p50 over levels: {percentile(starts, 50):.2f} s")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="levels 1 2 4, short windows")
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 2, 4, 8, 16, 24, 32, 48])
    parser.add_argument("--window", type=float, default=8.0, help="seconds measured per level")
    parser.add_argument("--llm-delay", type=float, default=0.1, help="seconds per LLM answer")
    parser.add_argument("--start-limit", type=float, default=60.0)
    parser.add_argument("--budget", type=float, default=600.0, help="seconds for the ramp")
    args = parser.parse_args(argv)
    if args.quick:
        args.levels, args.window, args.budget = [1, 2, 4], 4.0, 120.0
    if sorted(args.levels) != args.levels or args.levels[0] < 1:
        parser.error("--levels must be increasing positive numbers")
    logging.basicConfig(level=logging.ERROR)
    started = time.perf_counter()
    report(asyncio.run(main_async(args)), args)
    print(f"\nTotal bench time: {time.perf_counter() - started:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
