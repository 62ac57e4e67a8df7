"""Memory of an idle conversation's runtime, from /proc (RSS and PSS, with its children).

Starts conversations through ``NestedConversationManager`` (process sandbox) against the
scripted LLM, each answering one message and then waiting for the user: an idle
conversation. Reads every runtime's ``/proc/<pid>/status`` (VmRSS) and
``/proc/<pid>/smaps_rollup`` (Pss: shared pages split between the processes sharing them,
the fair share of each runtime), plus the runtime's children (none until a terminal or
python tool is used; the second table starts a Python kernel to show its cost).

    python bench/bench_memory.py [--quick] [--conversations 8]

Target (from the issue): idle runtime <= 60 MB RSS. Printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import tempfile
from pathlib import Path

from _stats import percentile

from jupyter_convo.agent.settings import AgentSettings
from jupyter_convo.events.inputs import MessageInput
from jupyter_convo.events.schema import AgentStateEvent
from jupyter_convo.manager.config import ManagerConfig
from jupyter_convo.manager.nested import NestedConversationManager
from jupyter_convo.runtime.models import InitialMessage
from jupyter_convo.store.conversations import StartTaskStatus
from jupyter_convo.testing import ScriptedLLM, llm_config_for, reply, tool_call

TARGET_MB = 60.0
WAIT = 120.0


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def pss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    raise KeyError("Pss")


def children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (from /proc/<pid>/task/*/children)."""
    found: list[int] = []
    stack = [pid]
    while stack:
        current = stack.pop()
        for task in Path(f"/proc/{current}/task").iterdir():
            text = (task / "children").read_text().split()
            for child in map(int, text):
                found.append(child)
                stack.append(child)
    return found


def measure_tree(pid: int) -> dict[str, float]:
    tree = [pid, *children(pid)]
    return {
        "rss": status_kb(pid, "VmRSS") / 1024,
        "pss": pss_kb(pid) / 1024,
        "tree_rss": sum(status_kb(p, "VmRSS") for p in tree) / 1024,
        "tree_pss": sum(pss_kb(p) for p in tree) / 1024,
        "processes": len(tree),
    }


async def wait_state(
    manager: NestedConversationManager, cid: str, state: str, after_id: int = -1
) -> None:
    async def watch() -> None:
        async for event in manager.subscribe(cid, after_id):
            if isinstance(event, AgentStateEvent) and event.state.value == state:
                return

    await asyncio.wait_for(watch(), WAIT)


async def start_idle(manager: NestedConversationManager, settings: AgentSettings, n: int) -> str:
    task = await manager.create_conversation(
        user_id="bench",
        settings=settings,
        initial_message=InitialMessage(text=f"memory bench {n}"),
    )
    async for update in manager.start_task_updates(task.id):
        if update.status is StartTaskStatus.ERROR:
            raise RuntimeError(f"start failed: {update.detail}")
    assert task.conversation_id is not None
    await wait_state(manager, task.conversation_id, "awaiting_user_input")
    return task.conversation_id


def runtime_pid(manager: NestedConversationManager, cid: str) -> int:
    record = json.loads((manager.conversation_dir(cid) / "runtime.json").read_text())
    return int(record["pid"])


def table(title: str, rows: list[dict[str, float]], case: str) -> str:
    lines = [
        f"{title}\n",
        "| measure (MB) | median | p95 | target | meets target |",
        "|---|---:|---:|---:|:---:|",
    ]
    for key, label in (
        ("rss", "runtime RSS"),
        ("pss", "runtime PSS"),
        ("tree_rss", "runtime + children RSS"),
        ("tree_pss", "runtime + children PSS"),
    ):
        values = [row[key] for row in rows]
        median = statistics.median(values)
        targeted = key == "rss" and case == "idle"  # the target is for an idle runtime
        target = f"{TARGET_MB:.0f}" if targeted else "-"
        meets = ("yes" if median <= TARGET_MB else "NO") if targeted else "-"
        lines.append(
            f"| {label}, {case} | {median:.1f} | {percentile(values, 95):.1f} | {target} "
            f"| {meets} |"
        )
    processes = sorted({int(row["processes"]) for row in rows})
    lines.append(f"\nprocesses per runtime tree: {processes}")
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> None:
    llm = ScriptedLLM()
    # Conversation 0 later runs one python cell (its second message).
    llm.add_script(
        [reply("Hello!"), tool_call("python", {"code": "x = 1"}), reply("Kernel ready.")],
        match="memory bench 0",
    )
    llm.add_script([reply("Hello! What shall I do?")], match="memory bench")
    with llm.serve(), tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        settings = AgentSettings(llm=llm_config_for(llm))
        manager = NestedConversationManager(
            ManagerConfig(
                data_dir=Path(tmp),
                keep_runtimes_on_shutdown=False,
                max_concurrent_conversations=args.conversations + 1,
            )
        )
        await manager.start()
        try:
            ids = [await start_idle(manager, settings, n) for n in range(args.conversations)]
            idle = [measure_tree(runtime_pid(manager, cid)) for cid in ids]
            # One conversation uses its python tool: the kernel is a child process.
            last = manager.store.get(ids[0]).last_event_id  # type: ignore[union-attr]
            await manager.send_event_to_conversation(ids[0], MessageInput(text="start a kernel"))
            await wait_state(manager, ids[0], "awaiting_user_input", last)
            with_kernel = [measure_tree(runtime_pid(manager, ids[0]))]
        finally:
            await manager.shutdown()
    print(f"## Runtime memory ({args.conversations} idle conversations, process sandbox)\n")
    print(table("Idle: bound, answered one message, waiting for the user", idle, "idle"))
    print()
    print(
        table(
            "The same after one python tool call (a Jupyter kernel child)",
            with_kernel,
            "with a kernel",
        )
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 conversations")
    parser.add_argument("--conversations", type=int, default=8)
    args = parser.parse_args(argv)
    if args.quick:
        args.conversations = 3
    if args.conversations < 1:
        parser.error("--conversations must be at least 1")
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
