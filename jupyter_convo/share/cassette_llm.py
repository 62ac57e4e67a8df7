"""An LLM client whose answers come from a recorded cassette, in order.

Cassette replay runs the real agent loop; only the LLM is replaced, so every decision is
the recorded one. The final entry of each recorded call is served (retried attempts are
skipped); a recorded failure is raised again as the same ``LLMError``. Served exchanges are
recorded into the new conversation's cassette, so a replay can itself be exported and
replayed. When the recording is used up the client refuses, unless it was switched to
``live`` (the replay is over) and a real client was given to go on with.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from ..agent.cassette import Cassette, CassetteEntry
from ..agent.llm import LLM_NOT_CONFIGURED, LLMClient, LLMError, LLMResponse
from ..agent.settings import LLMConfig
from ..events.redact import SecretRegistry

log = logging.getLogger(__name__)

REPLAY_CASSETTE_EXHAUSTED = "REPLAY_CASSETTE_EXHAUSTED"


class CassetteLLM(LLMClient):
    """``LLMClient.complete`` answered from ``entries`` (then from ``fallback`` once live)."""

    def __init__(
        self,
        entries: Sequence[CassetteEntry],
        *,
        fallback: LLMClient | None = None,
        cassette: Cassette | None = None,
        secrets: SecretRegistry | None = None,
        rewrite: Callable[[str], str] | None = None,
    ) -> None:
        answers = [entry for entry in entries if entry.final]
        model = str(answers[0].request.get("model") or "") if answers else ""
        config = fallback.config if fallback is not None else LLMConfig(model=model or "replay")
        # No endpoint of our own: the environment is not consulted.
        super().__init__(config, cassette=None, secrets=secrets, environ={})
        self.fallback = fallback
        self.recording = cassette
        self.live = False
        self._answers = answers
        self._next = 0
        self._rewrite = rewrite or (lambda text: text)

    @property
    def served(self) -> int:
        return self._next

    @property
    def remaining(self) -> int:
        return len(self._answers) - self._next

    async def complete(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]] | None = None,
    ) -> LLMResponse:
        if self._next < len(self._answers):
            entry = self._answers[self._next]
            self._next += 1
            return self._serve(entry, messages, tools)
        if self.live and self.fallback is not None:
            return await self.fallback.complete(messages, tools)
        if self.live:
            raise LLMError(
                LLM_NOT_CONFIGURED,
                "The replay is over and no LLM is configured to go on with. Set a model and "
                "key in the settings (or JUPYTER_CONVO_LLM_MODEL / JUPYTER_CONVO_LLM_API_KEY).",
            )
        raise LLMError(
            REPLAY_CASSETTE_EXHAUSTED,
            f"The recorded run has no more LLM answers (all {len(self._answers)} were served).",
        )

    def _serve(
        self,
        entry: CassetteEntry,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]] | None,
    ) -> LLMResponse:
        request = {
            **entry.request,
            "messages": [dict(m) for m in messages],
            "tools": [dict(t) for t in tools] if tools else None,
        }
        if entry.error is not None:
            error = entry.error
            self._keep(request, None, error, entry.latency)
            raise LLMError(
                str(error.get("code") or "LLM_UNAVAILABLE"),
                str(error.get("message") or "recorded LLM failure"),
                error.get("status_code") if isinstance(error.get("status_code"), int) else None,
            )
        try:
            response = LLMResponse.model_validate(entry.response)
        except ValidationError as exc:
            raise LLMError(
                REPLAY_CASSETTE_EXHAUSTED, f"A recorded LLM answer cannot be read: {exc}"
            ) from None
        response = response.model_copy(
            update={
                "content": self._rewrite(response.content) if response.content else None,
                "tool_calls": [
                    call.model_copy(update={"arguments": self._rewrite(call.arguments)})
                    for call in response.tool_calls
                ],
            }
        )
        self._keep(request, response.model_dump(), None, entry.latency)
        return response

    def _keep(
        self,
        request: dict[str, Any],
        response: dict[str, Any] | None,
        error: dict[str, Any] | None,
        latency: float,
    ) -> None:
        if self.recording is None:
            return
        try:
            self.recording.record(request, response, error, latency)
        except OSError as exc:
            log.error("Could not write the replay cassette %s: %s", self.recording.path, exc)

    async def close(self) -> None:
        if self.fallback is not None:
            await self.fallback.close()
        await super().close()


__all__ = ["REPLAY_CASSETTE_EXHAUSTED", "CassetteLLM"]
