"""The LLM gateway: every external agent's LLM traffic goes through the runtime.

An external agent gets the gateway's loopback URL (``url``, OpenAI style: ``.../v1``) and a
per-conversation token (``token``), never the user's key: the gateway checks the token,
puts the conversation's configured model in the request, forwards it to the conversation's
provider with the real key, and for every call
- records request and answer in the conversation's cassette (redacted by the cassette),
- logs an ``llm_call`` event (tokens, cost, latency) through the runtime's sink,
- refuses calls once the task's cost passed ``max_budget_per_task`` (an
  ``AGENT_BUDGET_EXCEEDED`` error event, and a 402 answer the agent sees).
Streaming answers are passed through as they come (the gateway asks the provider for the
usage chunk) and put together for the record.

Speaks Chat Completions (``POST /v1/chat/completions``, ``GET /v1/models``). The Responses
API, Anthropic Messages and Gemini are not served yet (see docs/agents.md).
"""

from __future__ import annotations

import json
import logging
import secrets as random_secrets
import socket
import time
from typing import Any

import httpx
from tornado import web
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from ..agent.cassette import Cassette
from ..agent.llm import LLMError, resolve_endpoint
from ..agent.metrics import Metrics
from ..agent.settings import AgentSettings
from ..events.redact import SecretRegistry
from ..events.schema import ErrorEvent, LLMCallEvent
from ..events.sink import EventSink

log = logging.getLogger(__name__)

DEFAULT_PROVIDER_URL = "https://api.openai.com/v1"
BUDGET_CODE = "AGENT_BUDGET_EXCEEDED"
MAX_BODY = 32 * 1024 * 1024


class LLMGateway:
    """One conversation's gateway (see the module doc). ``start`` binds it; ``close``."""

    def __init__(
        self,
        *,
        settings: AgentSettings,
        events: EventSink,
        cassette: Cassette,
        secrets: SecretRegistry,
        host: str = "127.0.0.1",
    ) -> None:
        self.settings = settings
        self.events = events
        self.cassette = cassette
        self.token = random_secrets.token_urlsafe(32)
        secrets.add(self.token)  # never shown, even if an agent echoes it
        self.host = host
        self.metrics = Metrics()
        self.task_cost = 0.0
        self._budget_reported = False
        self._server: HTTPServer | None = None
        self._client: httpx.AsyncClient | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    async def start(self) -> None:
        app = web.Application(
            [
                (r"/v1/chat/completions", ChatCompletionsHandler, {"gateway": self}),
                (r"/v1/models", ModelsHandler, {"gateway": self}),
            ]
        )
        sockets = bind_sockets(0, self.host, family=socket.AF_INET)
        self.port = sockets[0].getsockname()[1]
        self._server = HTTPServer(app, max_body_size=MAX_BODY)
        self._server.add_sockets(sockets)
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(self.settings.llm.timeout))
        log.info("LLM gateway on %s", self.url)

    async def close(self) -> None:
        if self._server is not None:
            self._server.stop()
            await self._server.close_all_connections()
            self._server = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def new_task(self) -> None:
        """A user message starts a task: its cost budget starts again."""
        self.task_cost = 0.0
        self._budget_reported = False

    def over_budget(self) -> str | None:
        budget = self.settings.max_budget_per_task
        if budget is None or self.task_cost < budget:
            return None
        message = (
            f"This task has cost ${self.task_cost:.4f}, over its budget of ${budget:.4f}: "
            "the LLM gateway refuses further calls. Send a message to let it continue."
        )
        if not self._budget_reported:
            self._budget_reported = True
            self.events.emit(ErrorEvent(code=BUDGET_CODE, message=message))
        return message

    def account(self, request: dict[str, Any], answer: dict[str, Any], latency: float) -> None:
        """Record one finished call: cassette, counts, ``llm_call`` event."""
        usage = answer.get("usage") or {}
        prompt = int(usage.get("prompt_tokens") or 0)
        completion = int(usage.get("completion_tokens") or 0)
        llm = self.settings.llm
        cost = prompt * llm.input_cost_per_token + completion * llm.output_cost_per_token
        self.metrics.prompt_tokens += prompt
        self.metrics.completion_tokens += completion
        self.metrics.cost += cost
        self.metrics.llm_calls += 1
        self.metrics.latency += latency
        self.task_cost += cost
        try:
            self.cassette.record(request, answer, None, latency)
        except OSError as exc:
            log.error("could not write the cassette: %s", exc)
        self.events.emit(
            LLMCallEvent(
                model=str(answer.get("model") or request.get("model") or ""),
                prompt_tokens=prompt,
                completion_tokens=completion,
                cost=cost,
                latency=latency,
                response_id=answer.get("id"),
            )
        )

    def record_error(self, request: dict[str, Any], error: dict[str, Any], latency: float) -> None:
        try:
            self.cassette.record(request, None, error, latency)
        except OSError as exc:
            log.error("could not write the cassette: %s", exc)


class _GatewayHandler(web.RequestHandler):
    def initialize(self, gateway: LLMGateway) -> None:
        self.gateway = gateway

    def check_token(self) -> bool:
        given = self.request.headers.get("Authorization", "")
        token = given.removeprefix("Bearer ").strip() or self.request.headers.get("x-api-key", "")
        if random_secrets.compare_digest(token.encode(), self.gateway.token.encode()):
            return True
        self.fail(401, "invalid gateway token", "invalid_api_key")
        return False

    def fail(self, status: int, message: str, code: str) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": {"message": message, "type": code, "code": code}}))


class ModelsHandler(_GatewayHandler):
    def get(self) -> None:
        if not self.check_token():
            return
        model = self.gateway.settings.llm.model
        self.finish({"object": "list", "data": [{"id": model, "object": "model"}]})


class ChatCompletionsHandler(_GatewayHandler):
    async def post(self) -> None:
        if not self.check_token():
            return
        gateway = self.gateway
        try:
            request = json.loads(self.request.body or b"{}")
            if not isinstance(request, dict):
                raise ValueError("the body is not a JSON object")
        except ValueError as exc:
            self.fail(400, f"invalid request body: {exc}", "invalid_request_error")
            return
        refusal = gateway.over_budget()
        if refusal is not None:
            self.fail(402, refusal, BUDGET_CODE)
            return
        try:
            endpoint = resolve_endpoint(gateway.settings.llm)
        except LLMError as exc:
            self.fail(503, exc.message, exc.code)
            return
        request["model"] = endpoint.model
        stream = bool(request.get("stream"))
        if stream:
            request["stream_options"] = {
                **(request.get("stream_options") or {}),
                "include_usage": True,
            }
        url = (endpoint.base_url or DEFAULT_PROVIDER_URL).rstrip("/") + "/chat/completions"
        headers = {
            "Authorization": f"Bearer {endpoint.api_key}",
            "Content-Type": "application/json",
        }
        assert gateway._client is not None
        started = time.monotonic()
        try:
            async with gateway._client.stream("POST", url, json=request, headers=headers) as reply:
                if reply.status_code >= 400 or not stream:
                    body = await reply.aread()
                    await self._relay_whole(request, reply.status_code, body, started)
                    return
                await self._relay_stream(request, reply, started)
        except httpx.HTTPError as exc:
            gateway.record_error(request, {"message": str(exc)}, time.monotonic() - started)
            self.fail(502, f"the LLM provider could not be reached: {exc}", "provider_unreachable")

    async def _relay_whole(
        self, request: dict[str, Any], status: int, body: bytes, started: float
    ) -> None:
        latency = time.monotonic() - started
        try:
            answer = json.loads(body)
        except ValueError:
            answer = {"message": body.decode("utf-8", errors="replace")[:2000]}
        if status >= 400:
            self.gateway.record_error(request, {"status": status, "body": answer}, latency)
        else:
            self.gateway.account(request, answer, latency)
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(body)

    async def _relay_stream(
        self, request: dict[str, Any], reply: httpx.Response, started: float
    ) -> None:
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("Cache-Control", "no-cache")
        answer = StreamedAnswer()
        async for line in reply.aiter_lines():
            answer.feed(line)
            self.write(line + "\n")
            if not line:
                await self.flush()
        await self.flush()
        self.gateway.account(request, answer.result(), time.monotonic() - started)
        self.finish()


class StreamedAnswer:
    """Puts a streamed Chat Completions answer (SSE ``data:`` lines) together."""

    def __init__(self) -> None:
        self.id: str | None = None
        self.model = ""
        self.content: list[str] = []
        self.tool_calls: dict[int, dict[str, Any]] = {}
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] | None = None

    def feed(self, line: str) -> None:
        if not line.startswith("data:"):
            return
        data = line[5:].strip()
        if not data or data == "[DONE]":
            return
        try:
            chunk = json.loads(data)
        except ValueError:
            return
        self.id = chunk.get("id") or self.id
        self.model = chunk.get("model") or self.model
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            if delta.get("content"):
                self.content.append(delta["content"])
            for call in delta.get("tool_calls") or []:
                slot = self.tool_calls.setdefault(
                    call.get("index", 0),
                    {"id": None, "type": "function", "function": {"name": "", "arguments": ""}},
                )
                slot["id"] = call.get("id") or slot["id"]
                function = call.get("function") or {}
                slot["function"]["name"] += function.get("name") or ""
                slot["function"]["arguments"] += function.get("arguments") or ""
            self.finish_reason = choice.get("finish_reason") or self.finish_reason

    def result(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": "".join(self.content) or None}
        if self.tool_calls:
            message["tool_calls"] = [self.tool_calls[i] for i in sorted(self.tool_calls)]
        return {
            "id": self.id,
            "object": "chat.completion",
            "model": self.model,
            "choices": [{"index": 0, "message": message, "finish_reason": self.finish_reason}],
            "usage": self.usage or {},
        }
