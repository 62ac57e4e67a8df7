"""``AcpAgent``: an external coding agent spoken to over ACP (Agent Client Protocol).

The agent runs as a subprocess of the runtime inside the conversation's jail (the same
``Confiner`` as our own tools; started through the default-signals launcher, in its own
process group), with a private HOME (its config lives there, never in the user's) and the
runtime's ``runtime.log`` as its stderr. The official SDK (``agent-client-protocol``) does
the JSON-RPC framing; the runtime is the client (``ConvoAcpClient``).

A subclass says how to launch one agent: ``launch(home) -> Launch`` (argv, environment,
files to write under the private HOME). Turns: a user message -> ``session/prompt``; the
agent's updates -> events (``mapping``); a permission request -> a ``tool_call`` action
awaiting confirmation (answered automatically when confirmation mode is off); Stop ->
``session/cancel``, then the process group ends.

Over 400 lines on purpose: one class with one job, the life of one ACP session (start,
turns, permissions, restart, stop share its state); the protocol's other parts live in
``mapping``, ``client`` and ``terminals``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from acp import PROTOCOL_VERSION, RequestError, connect_to_agent, text_block
from acp import schema as acp
from acp.client.connection import ClientSideConnection

from ...._version import __version__
from ....agent.metrics import Metrics
from ....events.inputs import AgentStateInput, ConfirmationInput, MessageInput, UserInput
from ....events.schema import (
    AgentState,
    AgentStateEvent,
    ConfirmationEvent,
    ErrorEvent,
    Event,
    MessageEvent,
    PermissionChoice,
    ToolCallEvent,
    ToolLocation,
)
from ....spawn import with_default_signals
from ...gateway import LLMGateway
from ..base import AgentBackend, AgentContext, AgentUnavailable
from .client import ConvoAcpClient
from .mapping import TurnMapper, _arguments
from .terminals import Terminals

log = logging.getLogger(__name__)

CANCEL_GRACE = 10.0  # a cancelled turn may take this long to answer before the process ends
TERM_GRACE = 5.0
STDIO_LIMIT = 16 * 1024 * 1024  # one JSON-RPC line may carry a whole file
ACP_AGENT_ERROR = "ACP_AGENT_ERROR"
ACP_AGENT_EXITED = "ACP_AGENT_EXITED"
ACP_UNSUPPORTED = "ACP_UNSUPPORTED"
ALLOW = ("allow_once", "allow_always")
REJECT = ("reject_once", "reject_always")
HIDDEN_PREFIXES = ("JUPYTER_CONVO_",)


@dataclass(frozen=True)
class LLMAccess:
    """What an agent is told about its LLM: the gateway's OpenAI-style base URL, the
    conversation's gateway token (its "API key") and the model name to ask for."""

    base_url: str
    api_key: str
    model: str


@dataclass
class Launch:
    """How to start one ACP agent: its argv, extra environment, and config files to write
    (paths relative to the private HOME)."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    read_only: list[Path] = field(default_factory=list)


def private_environment(home: Path) -> dict[str, str]:
    """HOME and the XDG folders inside the private HOME: no agent writes the user's config."""
    return {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_STATE_HOME": str(home / ".local" / "state"),
        "DO_NOT_TRACK": "1",
        "NO_UPDATE_NOTIFIER": "1",
    }


class AcpAgent(AgentBackend):
    """Base of every ACP backend; a subclass implements ``launch``."""

    name = "acp"
    description = "an external coding agent over the Agent Client Protocol"

    def __init__(self, context: AgentContext) -> None:
        super().__init__(context)
        self._state = AgentState.LOADING
        self._metrics = Metrics()
        self.process: asyncio.subprocess.Process | None = None
        self.conn: ClientSideConnection | None = None
        self.session_id: str | None = None
        self.agent_info: str = ""
        self.terminals: Terminals | None = None
        self.gateway: LLMGateway | None = None
        self.mapper = TurnMapper(emit=context.events.emit)
        self._turn: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._pending: dict[int, tuple[asyncio.Future[bool], list[acp.PermissionOption]]] = {}
        self._stopping = False
        self._stopped = False
        self.resumed_by = ""
        self._primer = ""  # the conversation so far, told to a new session with its 1st prompt

    # --- what a subclass provides ---------------------------------------------------------

    def launch(self, home: Path, llm: LLMAccess) -> Launch:
        raise AgentUnavailable(f"agent backend {self.name!r} does not say how to launch it")

    # --- state ------------------------------------------------------------------------------

    @property
    def state(self) -> AgentState:
        return self._state

    @property
    def metrics(self) -> Metrics:
        """The gateway's counts (every LLM call went through it); the agent's own usage
        reports where the gateway saw nothing."""
        metrics = self._metrics.model_copy()
        metrics.cost = max(metrics.cost, self.mapper.metrics.cost)
        if self.gateway is not None and self.gateway.metrics.llm_calls:
            seen = self.gateway.metrics
            metrics.prompt_tokens = seen.prompt_tokens
            metrics.completion_tokens = seen.completion_tokens
            metrics.cost = seen.cost
            metrics.llm_calls = seen.llm_calls
            metrics.latency = seen.latency
        return metrics

    def _set_state(self, state: AgentState, reason: str = "") -> None:
        if state is self._state and not reason:
            return
        self._state = state
        self.context.events.emit(AgentStateEvent(state=state, reason=reason))

    # --- start ------------------------------------------------------------------------------

    def _home(self) -> Path:
        confiner = self.context.confiner
        home = confiner.home if confiner.confined else self.context.directory / "home"
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        return home

    def _environment(self, home: Path, extra: Mapping[str, str]) -> dict[str, str]:
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(HIDDEN_PREFIXES)}
        env = self.context.confiner.environment(inherited)
        env.update(private_environment(home))
        env.update(extra)
        return env

    async def start(self, initial_message: str | None, image_urls: Sequence[str] = ()) -> None:
        ctx = self.context
        home = self._home()
        self.gateway = LLMGateway(
            settings=ctx.settings, events=ctx.events, cassette=ctx.cassette, secrets=ctx.secrets
        )
        await self.gateway.start()
        access = LLMAccess(self.gateway.url, self.gateway.token, ctx.settings.llm.model)
        try:
            launch = self.launch(home, access)
        except BaseException:
            await self.gateway.close()
            raise
        for relative, text in launch.files.items():
            target = home / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
            target.chmod(0o600)
        env = self._environment(home, launch.env)
        argv = ctx.confiner.command(launch.argv, cwd=ctx.workspace.root, read_only=launch.read_only)
        self.terminals = Terminals(ctx.confiner, ctx.workspace, env)
        self.mapper.terminal_output = self.terminals.take_output
        self._set_state(AgentState.LOADING, "starting " + self.name)
        try:
            self.process = await asyncio.create_subprocess_exec(
                *with_default_signals(argv, env),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=None,  # the runtime's own stderr: runtime.log
                cwd=ctx.workspace.root,
                env=env,
                start_new_session=True,
                limit=STDIO_LIMIT,
            )
        except OSError as exc:
            await self.gateway.close()
            raise AgentUnavailable(f"could not start {launch.argv[0]}: {exc}") from exc
        log.info("ACP agent %s started: pid %s", self.name, self.process.pid)
        client = ConvoAcpClient(
            workspace=ctx.workspace,
            mapper=self.mapper,
            terminals=self.terminals,
            on_permission=self._permission,
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self.conn = connect_to_agent(client, self.process.stdin, self.process.stdout)
        try:
            await self._handshake()
        except BaseException:
            await self._end_process()
            await self.gateway.close()
            raise
        self._watcher = asyncio.create_task(self._watch(), name=f"acp-watch-{ctx.conversation_id}")
        if self.resumed_by:
            self._set_state(AgentState.LOADING, f"resumed with {self.resumed_by}")
        if initial_message:
            self._accept(initial_message)
        else:
            self._set_state(AgentState.AWAITING_USER_INPUT)

    async def _handshake(self) -> None:
        assert self.conn is not None
        timeout = self.context.settings.agent_start_timeout
        capabilities = acp.ClientCapabilities(
            fs=acp.FileSystemCapabilities(read_text_file=True, write_text_file=True),
            terminal=True,
        )
        try:
            answer = await asyncio.wait_for(
                self.conn.initialize(
                    protocol_version=PROTOCOL_VERSION,
                    client_capabilities=capabilities,
                    client_info=acp.Implementation(name="jupyter-convo", version=__version__),
                ),
                timeout,
            )
        except asyncio.TimeoutError:
            raise AgentUnavailable(
                f"the {self.name} agent did not answer ACP initialize within "
                f"{timeout:g} s (see runtime.log for its output)"
            ) from None
        info = answer.agent_info
        self.agent_info = f"{info.name} {info.version}" if info is not None else self.name
        self.resumed_by = await asyncio.wait_for(
            self._open_session(answer.agent_capabilities), timeout
        )
        log.info("ACP agent %s: session %s", self.agent_info, self.session_id)

    async def _open_session(self, capabilities: acp.AgentCapabilities | None) -> str:
        """Continue the agent's own session (``session/load``) when it can and we know it;
        else a new one, primed with the conversation so far at the next prompt. Returns how
        (``""`` for a conversation with no history)."""
        assert self.conn is not None
        cwd = str(self.context.workspace.root)
        record = self.context.directory / SESSION_FILE
        earlier = load_session_record(record, self.name)
        if earlier and capabilities is not None and capabilities.load_session:
            self.mapper.muted = True  # the agent replays its history: it is logged already
            try:
                await self.conn.load_session(cwd=cwd, session_id=earlier, mcp_servers=[])
                self.session_id = earlier
                return "session/load"
            except Exception as exc:
                log.warning("ACP agent %s could not load session %s: %s", self.name, earlier, exc)
            finally:
                self.mapper.muted = False
        session = await self.conn.new_session(cwd=cwd, mcp_servers=[])
        self.session_id = session.session_id
        save_session_record(record, self.name, self.session_id)
        self._primer = conversation_so_far(self.context.events.read())
        return "a new session primed with the conversation so far" if self._primer else ""

    async def _watch(self) -> None:
        """An agent that exits on its own ends the conversation's turn with an error."""
        assert self.process is not None
        code = await self.process.wait()
        if self._stopping:
            return
        if self._turn is not None and not self._turn.done():
            self._turn.cancel()
        self._cancel_pending()
        self.mapper.end_turn()
        self.context.events.emit(
            ErrorEvent(
                code=ACP_AGENT_EXITED,
                message=f"the {self.name} agent exited (code {code}); see runtime.log",
            )
        )
        self._set_state(AgentState.ERROR, ACP_AGENT_EXITED)

    # --- turns ------------------------------------------------------------------------------

    def _accept(self, text: str) -> Event:
        message = self.context.events.emit(MessageEvent(source="user", text=text))
        if self.gateway is not None:
            self.gateway.new_task()
        previous = self._turn
        self._turn = asyncio.create_task(
            self._run_turn(text, previous), name=f"acp-turn-{self.context.conversation_id}"
        )
        return message

    async def _run_turn(self, text: str, previous: asyncio.Task[None] | None) -> None:
        if previous is not None and not previous.done():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await previous
        if self._stopping or self.conn is None or self.session_id is None:
            return
        if self.process is not None and self.process.returncode is not None:
            self.context.events.emit(
                ErrorEvent(code=ACP_AGENT_EXITED, message=f"the {self.name} agent is not running")
            )
            return
        self._set_state(AgentState.RUNNING)
        try:
            if self._primer:
                text, self._primer = f"{self._primer}\n\n{text}", ""
            answer = await self.conn.prompt(session_id=self.session_id, prompt=[text_block(text)])
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # An error answer comes from a live agent; anything else may be its exit.
            if not isinstance(exc, RequestError) and await self._exited():
                return  # the watcher reports the exit (the closed connection is its echo)
            self.mapper.end_turn()
            self.context.events.emit(ErrorEvent(code=ACP_AGENT_ERROR, message=_short(exc)))
            self._set_state(AgentState.ERROR, ACP_AGENT_ERROR)
            return
        self.mapper.end_turn()
        usage = answer.usage
        if usage is not None:
            self._metrics.prompt_tokens = usage.input_tokens
            self._metrics.completion_tokens = usage.output_tokens
        self._metrics.iterations += 1
        if answer.stop_reason == "cancelled":
            if self._state is not AgentState.STOPPED:
                self._set_state(AgentState.STOPPED, "cancelled")
            return
        self._set_state(AgentState.AWAITING_USER_INPUT, answer.stop_reason)

    async def _exited(self) -> bool:
        """After a failed request: did the agent's process end (waiting for it a little,
        as a closed connection comes just before the exit)?"""
        if self.process is None or self._stopping:
            return False
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.process.wait()), TERM_GRACE)
        return self.process.returncode is not None

    async def _permission(
        self, tool_call: acp.ToolCallUpdate, options: list[acp.PermissionOption]
    ) -> acp.RequestPermissionResponse:
        """A permission request: a ``tool_call`` action awaiting the user's answer (or
        answered at once when confirmation mode is off)."""
        self.mapper.flush()
        choices = [
            PermissionChoice(option_id=o.option_id, name=o.name, kind=o.kind) for o in options
        ]
        asks = self.context.settings.confirmation_mode
        action = self.context.events.emit(
            ToolCallEvent(
                cause=self.mapper.action_id(tool_call.tool_call_id),
                tool_call_id=tool_call.tool_call_id,
                tool_kind=tool_call.kind or "other",
                title=tool_call.title or tool_call.tool_call_id,
                locations=[
                    ToolLocation(path=loc.path, line=loc.line) for loc in tool_call.locations or ()
                ],
                arguments=_arguments(tool_call.raw_input),
                options=choices,
                confirmation="awaiting" if asks else "confirmed",
            )
        )
        if not asks:
            return _answer(options, allowed=True)
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending[action.id] = (future, options)
        self._set_state(AgentState.AWAITING_USER_CONFIRMATION)
        try:
            allowed = await future
        except asyncio.CancelledError:
            return acp.RequestPermissionResponse(outcome=acp.DeniedOutcome(outcome="cancelled"))
        finally:
            self._pending.pop(action.id, None)
        return _answer(options, allowed=allowed)

    def _cancel_pending(self) -> None:
        for future, _options in list(self._pending.values()):
            if not future.done():
                future.cancel()

    # --- input ------------------------------------------------------------------------------

    async def handle_input(self, item: UserInput) -> Event:
        if isinstance(item, MessageInput):
            return self._accept(item.text)
        if isinstance(item, ConfirmationInput):
            pending = self._pending.get(item.action_id)
            if pending is None:
                raise ValueError(f"action {item.action_id} is not waiting for confirmation")
            answer = self.context.events.emit(
                ConfirmationEvent(
                    cause=item.action_id, confirmed=item.confirmed, reason=item.reason
                )
            )
            self._set_state(AgentState.RUNNING)
            if not pending[0].done():
                pending[0].set_result(item.confirmed)
            return answer
        assert isinstance(item, AgentStateInput)
        if item.state == "stopped":
            await self._cancel_turn()
            self._set_state(AgentState.STOPPED, "stopped by the user")
            return self.context.events.emit(
                AgentStateEvent(state=AgentState.STOPPED, reason="turn cancelled")
            )
        return self.context.events.emit(
            ErrorEvent(
                code=ACP_UNSUPPORTED,
                message=f"an ACP agent cannot be {item.state}; Stop cancels its turn",
            )
        )

    async def _cancel_turn(self) -> None:
        """``session/cancel``; the agent then ends the turn (stop reason ``cancelled``)."""
        self._cancel_pending()
        turn = self._turn
        if turn is None or turn.done() or self.conn is None or self.session_id is None:
            return
        with contextlib.suppress(Exception):
            await self.conn.cancel(session_id=self.session_id)
        try:
            await asyncio.wait_for(asyncio.shield(turn), CANCEL_GRACE)
        except (asyncio.TimeoutError, asyncio.CancelledError, Exception):
            turn.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await turn

    # --- stop -------------------------------------------------------------------------------

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        with contextlib.suppress(Exception):
            await self._cancel_turn()
        self._stopping = True
        self.mapper.end_turn()
        if self.terminals is not None:
            await self.terminals.close()
        await self._end_process()
        if self.gateway is not None:
            await self.gateway.close()
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._watcher
        if self._state is not AgentState.STOPPED:
            self._set_state(AgentState.STOPPED, "runtime stopping")

    async def _end_process(self) -> None:
        """Close the connection, then SIGTERM the agent's process group, SIGKILL if it stays."""
        self._stopping = True
        if self.conn is not None:
            with contextlib.suppress(Exception):
                await self.conn.close()
        process = self.process
        if process is None:
            return
        if process.stdin is not None:
            with contextlib.suppress(Exception):
                process.stdin.close()
        for sig, grace in ((signal.SIGTERM, TERM_GRACE), (signal.SIGKILL, TERM_GRACE)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, sig)
            try:
                await asyncio.wait_for(process.wait(), grace)
                break
            except asyncio.TimeoutError:
                continue
        # The group may outlive its leader (a child that ignored SIGTERM): kill what is left.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)


SESSION_FILE = "acp-session.json"
PRIMER_MAX_CHARS = 20_000


def load_session_record(path: Path, agent: str) -> str | None:
    """The ACP session id an earlier run of ``agent`` saved, if any."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if isinstance(data, dict) and data.get("agent") == agent:
        session = data.get("session_id")
        return session if isinstance(session, str) else None
    return None


def save_session_record(path: Path, agent: str, session_id: str) -> None:
    path.write_text(json.dumps({"agent": agent, "session_id": session_id}), encoding="utf-8")


def conversation_so_far(events: Sequence[Event]) -> str:
    """The earlier messages, as text a new agent session is given before the next one."""
    lines = [
        f"{'User' if e.source == 'user' else 'You'}: {e.text}"
        for e in events
        if isinstance(e, MessageEvent)
    ]
    if not lines:
        return ""
    text = "\n".join(lines)[-PRIMER_MAX_CHARS:]
    return (
        "This conversation was restarted; your earlier session is gone. "
        f"The conversation so far:\n{text}\n\nThe user's new message follows."
    )


def _answer(options: list[acp.PermissionOption], *, allowed: bool) -> acp.RequestPermissionResponse:
    wanted = ALLOW if allowed else REJECT
    for kind in wanted:
        for option in options:
            if option.kind == kind:
                return acp.RequestPermissionResponse(
                    outcome=acp.AllowedOutcome(outcome="selected", option_id=option.option_id)
                )
    return acp.RequestPermissionResponse(outcome=acp.DeniedOutcome(outcome="cancelled"))


def _short(exc: BaseException, limit: int = 500) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
