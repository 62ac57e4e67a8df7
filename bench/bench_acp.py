"""What external (ACP) agents cost: start to the first ``initialize`` answer, and the LLM
gateway's overhead per call.

Run: ``python bench/bench_acp.py [--starts 5] [--calls 50]``. Prints a Markdown table:
- ``start``: the ACP backend's ``start()`` and ``stop()`` in the bubblewrap jail (gateway,
  spawn, ``initialize``, ``session/new``, then the process group ended) for the scripted
  ACP agent and each installed real agent (``scripts/install-agents.sh``);
- ``LLM call``: one small Chat Completions call to the scripted LLM, straight and through
  the gateway (the difference is the gateway's overhead).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
from _stats import Figure, markdown_table, timed

from jupyter_convo.agent.cassette import Cassette
from jupyter_convo.agent.confine import ConfinementSpec, Confiner, probe
from jupyter_convo.agent.llm import LLMClient
from jupyter_convo.agent.settings import AgentSettings
from jupyter_convo.agent.workspace import Workspace
from jupyter_convo.events.log import EventLog
from jupyter_convo.events.redact import SecretRegistry
from jupyter_convo.events.sink import LogSink
from jupyter_convo.runtime.agents import load_backend
from jupyter_convo.runtime.agents.base import AgentContext
from jupyter_convo.runtime.agents.registry import KNOWN_AGENTS
from jupyter_convo.runtime.gateway import LLMGateway
from jupyter_convo.testing import ScriptedLLM, llm_config_for, reply
from jupyter_convo.testing.acp_agent import ScriptedAcpAgent

BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def context(root: Path, settings: AgentSettings, bwrap: str) -> AgentContext:
    root.mkdir(parents=True)
    workspace = Workspace(root / "workspace")
    workspace.root.mkdir(exist_ok=True)
    secrets = SecretRegistry()
    log = EventLog(root / "events.jsonl", secrets=secrets)
    cassette = Cassette(root / "cassette.jsonl", secrets=secrets)
    jail = Confiner(
        ConfinementSpec(mechanism="bubblewrap", bwrap=bwrap),
        workspace=workspace.root,
        directory=root,
    )
    return AgentContext(
        conversation_id=root.name,
        directory=root,
        workspace=workspace,
        settings=settings,
        events=LogSink(log),
        confiner=jail,
        llm=LLMClient(settings.llm, cassette=cassette),
        cassette=cassette,
        secrets=secrets,
    )


def starter(
    name: str, backend_class: type, settings: AgentSettings, bwrap: str, tmp: Path
) -> Callable[[], Awaitable[None]]:
    counter = iter(range(10_000))

    async def start_once() -> None:
        backend = backend_class(context(tmp / f"{name}-{next(counter)}", settings, bwrap))
        try:
            await backend.start(None)
        finally:
            await backend.stop()

    return start_once


async def start_figures(
    settings: AgentSettings, bwrap: str, starts: int, tmp: Path
) -> list[Figure]:
    kinds: dict[str, type] = {"scripted-acp": ScriptedAcpAgent}
    for name, known in KNOWN_AGENTS.items():
        if known.find() is not None:
            kinds[name] = load_backend(name)
    figures = []
    for name, backend_class in kinds.items():
        runs = await timed(starter(name, backend_class, settings, bwrap, tmp), starts)
        figures.append(Figure(f"start {name} to its session (jailed)", runs))
    return figures


async def gateway_figures(settings: AgentSettings, calls: int, tmp: Path) -> list[Figure]:
    root = tmp / "gateway"
    root.mkdir()
    secrets = SecretRegistry()
    gateway = LLMGateway(
        settings=settings,
        events=LogSink(EventLog(root / "events.jsonl")),
        cassette=Cassette(root / "cassette.jsonl"),
        secrets=secrets,
    )
    await gateway.start()
    key = settings.llm.api_key.get_secret_value() if settings.llm.api_key else ""
    async with httpx.AsyncClient() as client:

        async def straight() -> None:
            url = f"{settings.llm.base_url}/chat/completions"
            (
                await client.post(url, json=BODY, headers={"Authorization": f"Bearer {key}"})
            ).raise_for_status()

        async def through() -> None:
            url = f"{gateway.url}/chat/completions"
            headers = {"Authorization": f"Bearer {gateway.token}"}
            (await client.post(url, json=BODY, headers=headers)).raise_for_status()

        direct = await timed(straight, calls)
        gated = await timed(through, calls)
    await gateway.close()
    return [
        Figure("LLM call, straight", direct, per="call"),
        Figure("LLM call, through the gateway", gated, per="call"),
    ]


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--calls", type=int, default=50)
    args = parser.parse_args()
    bwrap, reason = probe("bwrap")
    if bwrap is None:
        raise SystemExit(f"needs bubblewrap: {reason}")
    llm = ScriptedLLM()
    llm.add_script([reply("hello")] * 3)
    with llm.serve(), tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("JUPYTER_CONVO_TEST_ACP_SCRIPT", json.dumps({"turns": []}))
        settings = AgentSettings(llm=llm_config_for(llm))
        figures = await start_figures(settings, bwrap, args.starts, Path(tmp))
        figures += await gateway_figures(settings, args.calls, Path(tmp))
    print(markdown_table(figures))


if __name__ == "__main__":
    asyncio.run(main())
