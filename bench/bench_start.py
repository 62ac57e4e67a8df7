"""Create-to-READY of a conversation, cold and warm, in the process and docker sandboxes.

One run measures the four cases through ``NestedConversationManager``: a cold start (the
sandbox starts a runtime, then the bind) and a warm one (``warm_pool_size=1``: the bind of a
runtime started ahead; before each timed start the pool is waited on, untimed, until its
runtime is idle). No initial message, so no LLM call. Each conversation is then stopped and
deleted, untimed (for docker: its container removed).

    python bench/bench_start.py [--runs 10] [--image jupyter-convo-runtime:test] [--no-docker]

The docker cases need DOCKER_HOST and the image (``bash scripts/setup-podman.sh``). Prints a
Markdown table (median and p95). Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from _stats import Figure, markdown_table
from _summary import record

from jupyter_convo.agent.settings import AgentSettings, LLMConfig
from jupyter_convo.manager.config import ManagerConfig
from jupyter_convo.manager.nested import NestedConversationManager
from jupyter_convo.manager.sandboxes import make_sandbox
from jupyter_convo.store.conversations import StartTaskStatus

S = StartTaskStatus
SETTINGS = AgentSettings(llm=LLMConfig(model="bench-model", base_url="http://127.0.0.1:9"))
POOL_WAIT = 120.0


async def one_start(manager: NestedConversationManager) -> dict[str, float]:
    if manager.pool is not None:
        await manager.pool.wait_idle(timeout=POOL_WAIT)
    start = time.perf_counter()
    task = await manager.create_conversation(user_id="bench", settings=SETTINGS)
    seen: dict[StartTaskStatus, float] = {}
    async for update in manager.start_task_updates(task.id):
        seen.setdefault(update.status, time.perf_counter())
        if update.status is S.ERROR:
            raise RuntimeError(f"start failed: {update.detail}")
    assert task.conversation_id is not None
    await manager.close_session(task.conversation_id)
    await manager.delete_conversation(task.conversation_id)
    return {
        "create -> READY": seen[S.READY] - start,
        "sandbox": seen[S.PREPARING_WORKSPACE] - seen[S.WAITING_FOR_SANDBOX],
        "bind": seen[S.READY] - seen[S.STARTING_CONVERSATION],
    }


async def measure_case(
    name: str, runs: int, traits: dict[str, Any] | None = None, **config: Any
) -> list[Figure]:
    """``config``: ManagerConfig fields; ``traits``: the sandbox's own (c.<Sandbox>.*)."""
    with tempfile.TemporaryDirectory(prefix="bench-start-") as tmp:
        manager_config = ManagerConfig(
            data_dir=Path(tmp), keep_runtimes_on_shutdown=False, **config
        )
        manager = NestedConversationManager(
            manager_config, sandbox=make_sandbox(manager_config, **(traits or {}))
        )
        await manager.start()
        try:
            await one_start(manager)  # warm-up: imports, page cache, image layers
            samples = [await one_start(manager) for _ in range(runs)]
        finally:
            await manager.shutdown()
    for phase in samples[0]:
        record(f"start_{name}_{phase}".replace(" ", "_"), [s[phase] for s in samples], "s")
    return [
        Figure(f"{name}: {phase}", [sample[phase] for sample in samples], per="start")
        for phase in samples[0]
    ]


async def main(runs: int, image: str, docker: bool) -> None:
    cases: list[tuple[str, dict[str, Any]]] = [
        ("process cold", {"sandbox": "process"}),
        ("process warm", {"sandbox": "process", "warm_pool_size": 1}),
    ]
    if docker:
        cases += [
            ("docker cold", {"sandbox": "docker", "traits": {"image": image}}),
            ("docker warm", {"sandbox": "docker", "traits": {"image": image}, "warm_pool_size": 1}),
        ]
    figures: list[Figure] = []
    for name, config in cases:
        print(f"measuring {name} ({runs} runs)...", flush=True)
        figures += await measure_case(name, runs, **config)
    print()
    print(markdown_table(figures))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument(
        "--image", default=os.environ.get("JUPYTER_CONVO_TEST_IMAGE", "jupyter-convo-runtime:test")
    )
    parser.add_argument("--no-docker", action="store_true", help="only the process sandbox")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(main(args.runs, args.image, not args.no_docker))
