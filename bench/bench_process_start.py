"""Create-to-READY of a conversation in the process sandbox (cold start), through the manager.

Each run calls ``NestedConversationManager.create_conversation`` (no initial message, so no
LLM call), follows its start task to READY and splits the time into its phases: the sandbox
(spawn -> ready line), the workspace and the bind (``POST /api/conversations``). Then it
stops the conversation gracefully (``close_session``: stop, poll, process group gone) and
times that too.

    python bench/bench_process_start.py [--runs 10]

Prints a Markdown table (median and p95). Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
import time
from pathlib import Path

from _stats import Figure, markdown_table

from jupyter_convo.agent.settings import AgentSettings, LLMConfig
from jupyter_convo.manager.config import ManagerConfig
from jupyter_convo.manager.nested import NestedConversationManager
from jupyter_convo.store.conversations import StartTaskStatus

S = StartTaskStatus


async def one_run(manager: NestedConversationManager) -> dict[str, float]:
    settings = AgentSettings(llm=LLMConfig(model="bench-model", base_url="http://127.0.0.1:9"))
    start = time.perf_counter()
    task = await manager.create_conversation(user_id="bench", settings=settings)
    seen: dict[StartTaskStatus, float] = {}
    async for update in manager.start_task_updates(task.id):
        seen.setdefault(update.status, time.perf_counter())
        if update.status is S.ERROR:
            raise RuntimeError(f"start failed: {update.detail}")
    ready = seen[S.READY]
    assert task.conversation_id is not None
    stop_start = time.perf_counter()
    await manager.close_session(task.conversation_id)
    stopped = time.perf_counter()
    return {
        "create -> READY": ready - start,
        "sandbox (spawn -> ready line)": seen[S.PREPARING_WORKSPACE] - seen[S.WAITING_FOR_SANDBOX],
        "bind (POST /api/conversations)": ready - seen[S.STARTING_CONVERSATION],
        "graceful stop (close_session)": stopped - stop_start,
    }


async def main(runs: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-process-start-") as tmp:
        manager = NestedConversationManager(
            ManagerConfig(data_dir=Path(tmp), keep_runtimes_on_shutdown=False)
        )
        await manager.start()
        try:
            await one_run(manager)  # warm the OS caches; not counted
            results = [await one_run(manager) for _ in range(runs)]
        finally:
            await manager.shutdown()
    figures = [
        Figure(name, [result[name] for result in results], per="conversation")
        for name in results[0]
    ]
    print(f"Process sandbox, cold start, {runs} runs (after one uncounted run)\n")
    print(markdown_table(figures))
    print(
        "\nwarm pool: TODO - not implemented yet (warm_pool_size comes with a later issue);"
        " no warm-start figure is measured."
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(main(args.runs))
