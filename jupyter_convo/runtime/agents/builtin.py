"""The built-in agent as a backend: our LLM loop (``AgentController``) and our tools."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from ...agent.controller import AgentController
from ...agent.metrics import Metrics
from ...agent.tools import build_tools
from ...agent.tools.base import Tool
from ...events.inputs import UserInput
from ...events.schema import AgentState, Event
from .base import AgentBackend, AgentBusy, AgentContext

log = logging.getLogger(__name__)


class BuiltinAgent(AgentBackend):
    """Asks the conversation's LLM and runs the shell, Python and file tools itself; also
    the one backend that can replay a recorded run (actions or cassette) before going live."""

    name = "builtin"
    description = "jupyter-convo's own agent: shell, Python and file tools, any OpenAI-style LLM"

    def __init__(self, context: AgentContext) -> None:
        super().__init__(context)
        self.controller: AgentController | None = None
        self._tools: list[Tool] = []
        self._replay_task: asyncio.Task[None] | None = None

    @property
    def state(self) -> AgentState:
        return self.controller.state if self.controller is not None else AgentState.LOADING

    @property
    def metrics(self) -> Metrics:
        return self.controller.metrics.model_copy() if self.controller is not None else Metrics()

    async def start(self, initial_message: str | None, image_urls: Sequence[str] = ()) -> None:
        ctx = self.context
        self._tools = build_tools(ctx.workspace, ctx.settings, ctx.confiner)
        if ctx.replay is not None:
            self._replay_task = asyncio.create_task(
                self._run_replay(), name=f"replay-{ctx.conversation_id}"
            )
            return
        self.controller = AgentController(
            events=ctx.events,
            llm=ctx.llm,
            tools=self._tools,
            settings=ctx.settings,
            workspace=ctx.workspace,
            instructions=ctx.instructions,
        )
        await self.controller.start(initial_message, image_urls)

    async def _run_replay(self) -> None:
        """Replay, then let the live agent take over (also when the replay failed)."""
        from ...share.replay import replay_then_live

        ctx = self.context
        assert ctx.replay is not None and ctx.replay_log is not None
        source, request = ctx.replay
        self.controller = await replay_then_live(
            source,
            request.mode,
            log=ctx.replay_log,
            tools=self._tools,
            settings=ctx.settings,
            workspace=ctx.workspace,
            llm=ctx.llm,
            cassette=ctx.cassette,
            secrets=ctx.secrets,
            events=ctx.events,
        )

    async def handle_input(self, item: UserInput) -> Event:
        replaying = self._replay_task is not None and not self._replay_task.done()
        if replaying or self.controller is None:
            raise AgentBusy(
                f"conversation {self.context.conversation_id} is replaying a recorded run; "
                "send input once its replay_summary event arrived"
            )
        return await self.controller.handle_input(item)

    async def stop(self) -> None:
        if self._replay_task is not None and not self._replay_task.done():
            self._replay_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._replay_task
        if self.controller is not None:
            await self.controller.close()  # closes the tools too
            return
        for tool in self._tools:
            try:
                await tool.close()
            except Exception:
                log.exception("closing tool %s failed", tool.name)
