"""A scripted ACP agent (on the official SDK): the test double at the ACP boundary.

Run as ``python -m jupyter_convo.testing.acp_agent SCRIPT_JSON``; it speaks ACP on its
stdio and plays one turn of the script per ``session/prompt``. ``ScriptedAcpAgent`` is the
runtime backend that launches it (tests register it under an entry point, see
``echo_agent.write_agent_entry_point``, and give the script in the runtime's environment
variable ``JUPYTER_CONVO_TEST_ACP_SCRIPT``).

Script: ``{"initialize": true, "load_session": false, "turns": [[step, ...], ...]}``; a
prompt past the last turn answers ``done``. ``initialize: false`` never answers
``initialize`` (a hung agent). Steps:

- ``{"message": "text", "chunks": N}``, ``{"thought": "text"}``: chunks of text
- ``{"plan": [{"content", "status", "priority"}]}``, ``{"usage": {"used", "size", "cost"}}``
- ``{"tool": {"id", "kind", "title", "path"}, "permission": bool, "write": {"path",
  "content"}, "read": "path", "terminal": {"command", "args"}, "diff": {"path", "old",
  "new"}}``: a tool call; with ``permission`` it asks first (a rejection fails the call);
  ``write``/``read`` go through the client's ``fs/*``, ``terminal`` through
  ``terminal/*``; errors the client answers end the call as failed with their message
- ``{"echo_prompt": true}``: a message repeating the prompt (``loaded <id>: `` first after
  a ``session/load``, which replays a "replayed history" message)
- ``{"hang": true}``: wait until ``session/cancel``; ``{"crash": N}``: exit with code N
- ``{"env": ["NAME", ...]}``: a message listing which of those variables are set;
  ``{"find": "text"}``: a message saying whether any variable's value holds ``text``
- ``{"llm": "prompt", "stream": bool}``: one Chat Completions call to ``$OPENAI_BASE_URL``
  with ``$OPENAI_API_KEY``; the answer (or ``llm error <status>``) becomes a message
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any, Literal, cast

from ..runtime.agents.acp.backend import AcpAgent, Launch, LLMAccess

SCRIPT_ENV = "JUPYTER_CONVO_TEST_ACP_SCRIPT"


class ScriptedAcpAgent(AcpAgent):
    """Launches this module's scripted agent with the script the runtime was given."""

    name = "scripted-acp"
    description = "test double: a scripted ACP agent"

    def launch(self, home: Path, llm: LLMAccess) -> Launch:
        script = os.environ.get(SCRIPT_ENV, '{"turns": []}')
        return Launch(
            argv=[sys.executable, "-m", "jupyter_convo.testing.acp_agent", script],
            env={"OPENAI_BASE_URL": llm.base_url, "OPENAI_API_KEY": llm.api_key},
        )


# --- the agent program ------------------------------------------------------------------


class _Cancelled(Exception):
    pass


class ScriptedAgent:
    """Implements the SDK's ``acp.Agent`` protocol from a script."""

    def __init__(self, script: dict[str, Any]) -> None:
        self.script = script
        self.turn = 0
        self.cancelled = asyncio.Event()
        self.conn: Any = None
        self.loaded: str | None = None
        self.prompt_text = ""

    def on_connect(self, conn: Any) -> None:
        self.conn = conn

    async def initialize(self, protocol_version: int, **kwargs: Any) -> Any:
        from acp import schema as acp

        if self.script.get("initialize", True) is False:
            await asyncio.Event().wait()  # never answers
        return acp.InitializeResponse(
            protocol_version=protocol_version,
            agent_capabilities=acp.AgentCapabilities(
                load_session=bool(self.script.get("load_session"))
            ),
            agent_info=acp.Implementation(name="scripted-acp", version="1"),
        )

    async def new_session(self, cwd: str, **kwargs: Any) -> Any:
        from acp import schema as acp

        return acp.NewSessionResponse(session_id=f"scripted-{uuid.uuid4().hex[:8]}")

    async def load_session(self, cwd: str, session_id: str, **kwargs: Any) -> Any:
        import acp as sdk
        from acp import schema as acp

        # As real agents do: replay the history (the client already has it).
        await self.send(session_id, sdk.update_agent_message_text("replayed history"))
        self.loaded = session_id
        return acp.LoadSessionResponse()

    async def authenticate(self, method_id: str, **kwargs: Any) -> None:
        return None

    async def cancel(self, session_id: str, **kwargs: Any) -> None:
        self.cancelled.set()

    async def prompt(self, session_id: str, prompt: list[Any], **kwargs: Any) -> Any:
        from acp import schema as acp

        self.cancelled.clear()
        self.prompt_text = "".join(getattr(block, "text", "") for block in prompt)
        turns = self.script.get("turns", [])
        steps = turns[self.turn] if self.turn < len(turns) else [{"message": "done"}]
        self.turn += 1
        try:
            for step in steps:
                if self.cancelled.is_set():
                    raise _Cancelled
                await self.step(session_id, step)
        except _Cancelled:
            return acp.PromptResponse(stop_reason="cancelled")
        usage = acp.Usage(total_tokens=30, input_tokens=20, output_tokens=10)
        return acp.PromptResponse(stop_reason="end_turn", usage=usage)

    async def send(self, session_id: str, update: Any) -> None:
        await self.conn.session_update(session_id=session_id, update=update)

    async def step(self, session_id: str, step: dict[str, Any]) -> None:
        import acp
        from acp import schema as s

        if "message" in step:
            text, chunks = step["message"], max(int(step.get("chunks", 1)), 1)
            size = -(-len(text) // chunks)
            for start in range(0, len(text), size):
                await self.send(
                    session_id, acp.update_agent_message_text(text[start : start + size])
                )
        elif "thought" in step:
            await self.send(session_id, acp.update_agent_thought_text(step["thought"]))
        elif "plan" in step:
            entries = [
                acp.plan_entry(e["content"], status=e.get("status", "pending"))
                for e in step["plan"]
            ]
            await self.send(session_id, acp.update_plan(entries))
        elif "usage" in step:
            usage = step["usage"]
            cost = s.Cost(amount=usage["cost"], currency="USD") if "cost" in usage else None
            await self.send(
                session_id,
                s.UsageUpdate(
                    session_update="usage_update",
                    used=usage.get("used", 0),
                    size=usage.get("size", 0),
                    cost=cost,
                ),
            )
        elif "env" in step:
            present = [name for name in step["env"] if name in os.environ]
            await self.send(session_id, acp.update_agent_message_text("env: " + ",".join(present)))
        elif "echo_prompt" in step:
            told = f"loaded {self.loaded}: " if self.loaded else ""
            await self.send(session_id, acp.update_agent_message_text(told + self.prompt_text))
        elif "find" in step:
            found = any(step["find"] in value for value in os.environ.values())
            await self.send(session_id, acp.update_agent_message_text(f"found: {found}"))
        elif "llm" in step:
            answer = await asyncio.to_thread(_ask_llm, step["llm"], bool(step.get("stream")))
            await self.send(session_id, acp.update_agent_message_text(answer))
        elif "hang" in step:
            await self.cancelled.wait()
            raise _Cancelled
        elif "crash" in step:
            os._exit(int(step["crash"]))
        elif "tool" in step:
            await self.tool(session_id, step)

    async def tool(self, session_id: str, step: dict[str, Any]) -> None:
        import acp
        from acp import RequestError
        from acp import schema as s

        tool = step["tool"]
        call_id = tool.get("id", f"call-{uuid.uuid4().hex[:6]}")
        locations = [s.ToolCallLocation(path=tool["path"])] if tool.get("path") else None
        await self.send(
            session_id,
            acp.start_tool_call(
                call_id,
                tool.get("title", call_id),
                kind=tool.get("kind", "other"),
                status="pending",
                locations=locations,
                raw_input=tool.get("input"),
            ),
        )
        if step.get("permission"):
            options = [
                s.PermissionOption(option_id="yes", name="Allow", kind="allow_once"),
                s.PermissionOption(option_id="no", name="Reject", kind="reject_once"),
            ]
            answer = await self.conn.request_permission(
                session_id=session_id,
                tool_call=acp.update_tool_call(call_id, title=tool.get("title", call_id)),
                options=options,
            )
            outcome = answer.outcome
            if getattr(outcome, "option_id", None) != "yes":
                text = "cancelled" if outcome.outcome == "cancelled" else "rejected by the user"
                await self.send(
                    session_id,
                    acp.update_tool_call(
                        call_id, status="failed", content=[acp.tool_content(acp.text_block(text))]
                    ),
                )
                if outcome.outcome == "cancelled":
                    raise _Cancelled
                return
        await self.send(session_id, acp.update_tool_call(call_id, status="in_progress"))
        content: list[Any] = []
        status: Literal["completed", "failed"] = "completed"
        try:
            if "write" in step:
                write = step["write"]
                await self.conn.write_text_file(
                    session_id=session_id, path=write["path"], content=write["content"]
                )
                content.append(acp.tool_diff_content(write["path"], write["content"]))
            if "read" in step:
                read = await self.conn.read_text_file(session_id=session_id, path=step["read"])
                content.append(acp.tool_content(acp.text_block(read.content)))
            if "diff" in step:
                diff = step["diff"]
                content.append(acp.tool_diff_content(diff["path"], diff["new"], diff.get("old")))
            if "terminal" in step:
                term = step["terminal"]
                created = await self.conn.create_terminal(
                    session_id=session_id,
                    command=term["command"],
                    args=term.get("args", []),
                    cwd=term.get("cwd"),
                )
                await self.send(
                    session_id,
                    acp.update_tool_call(
                        call_id, content=[acp.tool_terminal_ref(created.terminal_id)]
                    ),
                )
                exited = await self.conn.wait_for_terminal_exit(
                    session_id=session_id, terminal_id=created.terminal_id
                )
                output = await self.conn.terminal_output(
                    session_id=session_id, terminal_id=created.terminal_id
                )
                content.append(acp.tool_content(acp.text_block(f"exit {exited.exit_code}")))
                del output  # the client shows the terminal's output itself
                await self.conn.release_terminal(
                    session_id=session_id, terminal_id=created.terminal_id
                )
        except RequestError as exc:
            status = "failed"
            detail = exc.data.get("message") if isinstance(exc.data, dict) else None
            content.append(acp.tool_content(acp.text_block(f"error: {detail or exc}")))
        await self.send(session_id, acp.update_tool_call(call_id, status=status, content=content))


def _ask_llm(prompt: str, stream: bool) -> str:
    """One Chat Completions call, as an agent makes it: the text of the answer."""
    import urllib.error
    import urllib.request

    body = {"model": "any", "messages": [{"role": "user", "content": prompt}], "stream": stream}
    request = urllib.request.Request(
        os.environ["OPENAI_BASE_URL"].rstrip("/") + "/chat/completions",
        data=json.dumps(body).encode(),
        headers={
            "Authorization": f"Bearer {os.environ['OPENAI_API_KEY']}",
            "Content-Type": "application/json",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            raw = reply.read().decode()
    except urllib.error.HTTPError as exc:
        return f"llm error {exc.code}"
    if not stream:
        return str(json.loads(raw)["choices"][0]["message"]["content"])
    parts = []
    for line in raw.splitlines():
        if line.startswith("data:") and line[5:].strip() not in ("", "[DONE]"):
            for choice in json.loads(line[5:])["choices"]:
                parts.append((choice.get("delta") or {}).get("content") or "")
    return "".join(parts)


async def _main(script: dict[str, Any]) -> None:
    from acp import run_agent

    await run_agent(cast(Any, ScriptedAgent(script)))


if __name__ == "__main__":
    asyncio.run(_main(json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}))
