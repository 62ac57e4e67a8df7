"""Condensation: keep a long conversation inside the model's context window.

When the next LLM request would come close to the context window (or the endpoint said it
is too long), the older part of the history is summarised by the LLM and a
``CondensationEvent`` is logged: from then on the LLM sees events ``start_id``..``end_id``
as that summary. The log is never rewritten: the event says what was summarised, so a
restart or a replay rebuilds exactly the view the LLM had.

What is kept verbatim: everything before the first LLM call (the task, as the user wrote
it), the last ``keep_turns`` LLM turns with their results, and every user message of the
summarised part (appended to the summary). Ranges sit on turn boundaries (an ``llm_call``
event starts a turn), so every tool call still gets its result.

Token counts are estimates (JSON characters / 4): no tokenizer is shipped for every
model, and the endpoint's context-length error is the backstop.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..events.schema import CondensationEvent, EventBase, LLMCallEvent, MessageEvent
from .history import IncrementalHistory, Message, build_messages, truncate_for_llm
from .llm import LLMClient, LLMError
from .settings import AgentSettings

CHARS_PER_TOKEN = 4
SUMMARY_HEADER = (
    "[Earlier steps of this conversation were condensed to save context: "
    "{turns} assistant turns. Summary:]\n"
)
# How many assistant turns a request's summary stands for (the scripted LLM counts them).
SUMMARY_TURNS = re.compile(r"condensed to save context: (\d+) assistant turns")
USER_MESSAGES_HEADER = "\n\n[What the user said in that part, verbatim:]\n"
SUMMARY_REQUEST = "Summarise the conversation below for the agent that continues it."
SUMMARY_SYSTEM = (
    "You condense the history of an AI agent working in a user's workspace, so it can go "
    "on with less context. Write a concise, factual summary: the user's task and every "
    "requirement they stated, what the agent did and found (files created or changed, "
    "commands that worked or failed and why, key values), decisions taken, and what "
    "remains to do. Keep exact file paths, names and numbers. No preamble."
)
MAX_ITEM_CHARS = 4_000  # one message of the summarised part, as the summarizer sees it

# Context windows (tokens) of common models, by name prefix; the longest prefix wins.
# ``LLMConfig.context_window`` overrides; a model not listed is condensed only on a
# context-length error.
KNOWN_WINDOWS: dict[str, int] = {
    "gpt-4o": 128_000,
    "gpt-4.1": 1_047_576,
    "gpt-4-turbo": 128_000,
    "gpt-4": 8_192,
    "gpt-3.5-turbo": 16_385,
    "gpt-5": 400_000,
    "o1": 200_000,
    "o3": 200_000,
    "o4-mini": 200_000,
    "claude": 200_000,
    "gemini-1.5": 1_000_000,
    "gemini-2": 1_000_000,
    "mistral-large": 128_000,
    "deepseek": 64_000,
    "llama3.1": 128_000,
    "qwen2.5": 32_768,
}


def context_window(model: str, configured: int | None = None) -> int | None:
    """The model's context window in tokens: configured, else known, else None."""
    if configured is not None:
        return configured
    name = model.rsplit("/", 1)[-1].lower()  # "openai/gpt-4o" -> "gpt-4o"
    matches = [prefix for prefix in KNOWN_WINDOWS if name.startswith(prefix)]
    return KNOWN_WINDOWS[max(matches, key=len)] if matches else None


def estimate_tokens(
    messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]] = ()
) -> int:
    """A rough token count of a request (JSON characters / 4)."""
    size = len(json.dumps(list(messages), ensure_ascii=False))
    if tools:
        size += len(json.dumps(list(tools), ensure_ascii=False))
    return size // CHARS_PER_TOKEN


def summary_message(event: CondensationEvent) -> Message:
    """The message the LLM sees instead of the condensed events."""
    # No event ids: a replayed log numbers its events differently, the request must not.
    header = SUMMARY_HEADER.format(turns=event.turns)
    return {"role": "user", "content": header + event.summary}


def latest_condensation(events: Sequence[EventBase]) -> CondensationEvent | None:
    return next((e for e in reversed(events) if isinstance(e, CondensationEvent)), None)


def condensed_prefix(
    events: Sequence[EventBase],
    condensation: CondensationEvent,
    *,
    system_prompt: str | None,
    max_chars: int,
) -> list[Message]:
    """The messages for the log up to ``end_id`` once ``condensation`` applies: the
    events before ``start_id`` as they were, then the summary."""
    head = [e for e in events if e.id < condensation.start_id]
    messages = build_messages(head, system_prompt=system_prompt, max_chars=max_chars)
    return [*messages, summary_message(condensation)]


@dataclass(frozen=True)
class Plan:
    """What a condensation would summarise: events ``start_id``..``end_id``."""

    start_id: int
    end_id: int
    previous: CondensationEvent | None
    events: list[EventBase]  # the events of the range not covered by ``previous``
    user_texts: list[str]  # every user message of the whole range, in order


def plan(events: Sequence[EventBase], keep_turns: int) -> Plan | None:
    """The range to condense in ``events`` (the whole log), or None if nothing can be.

    Keeps the last ``keep_turns`` turns, fewer if that leaves nothing new to summarise
    (but always the last one: it is the step the agent is in)."""
    previous = latest_condensation(events)
    first_user = next(
        (e.id for e in events if isinstance(e, MessageEvent) and e.source == "user"), None
    )
    if first_user is None:
        return None
    turns = [e.id for e in events if isinstance(e, LLMCallEvent) and e.id > first_user]
    start = previous.start_id if previous is not None else (turns[0] if turns else None)
    if start is None:
        return None
    done = previous.end_id if previous is not None else start - 1
    for keep in range(max(keep_turns, 1), 0, -1):
        if len(turns) <= keep:
            continue
        end = turns[-keep] - 1
        if end > done:
            new = [e for e in events if done < e.id <= end]
            said = [
                e.text
                for e in events
                if start <= e.id <= end and isinstance(e, MessageEvent) and e.source == "user"
            ]
            return Plan(start, end, previous, new, said)
    return None


def summary_request(plan: Plan, *, max_chars: int) -> list[Message]:
    """The LLM request that summarises ``plan``'s events (and the previous summary)."""
    lines: list[str] = []
    if plan.previous is not None:
        lines.append(f"[summary of the earlier part]\n{plan.previous.summary}")
    for message in build_messages(plan.events, max_chars=max_chars):
        lines.append(_as_text(message))
    transcript = "\n\n".join(lines)
    return [
        {"role": "system", "content": SUMMARY_SYSTEM},
        {"role": "user", "content": f"{SUMMARY_REQUEST}\n\n{transcript}"},
    ]


def with_user_messages(summary: str, texts: Sequence[str]) -> str:
    """The summary, then what the user wrote in the summarised part, verbatim."""
    if not texts:
        return summary
    return summary + USER_MESSAGES_HEADER + "\n".join(f"- {t}" for t in texts)


class CondensationFailed(Exception):
    """Nothing could be condensed, or the summary could not be made (``code``: why)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Condenser:
    """Decides when the history is too long and makes the ``CondensationEvent``."""

    def __init__(self, llm: LLMClient, settings: AgentSettings, system_prompt: str) -> None:
        self.llm = llm
        self.settings = settings
        self.system_prompt = system_prompt
        self.window = context_window(settings.llm.model, settings.llm.context_window)

    def too_long(self, tokens: int) -> bool:
        """Should a request of ``tokens`` (estimated) be condensed first?"""
        config = self.settings.condensation
        return bool(config.enabled and self.window and tokens > config.threshold * self.window)

    def view(self, events: Sequence[EventBase], condensation: CondensationEvent) -> list[Message]:
        """The messages the LLM sees for ``events`` (the whole log) under ``condensation``."""
        history = self.history(events, condensation)
        return history.messages([e for e in events if e.id > condensation.end_id])

    def history(
        self, events: Sequence[EventBase], condensation: CondensationEvent
    ) -> IncrementalHistory:
        """An ``IncrementalHistory`` that continues after ``condensation.end_id``."""
        max_chars = self.settings.max_output_chars
        history = IncrementalHistory(system_prompt=self.system_prompt, max_chars=max_chars)
        prefix = condensed_prefix(
            events, condensation, system_prompt=self.system_prompt, max_chars=max_chars
        )
        history.restart(prefix, condensation.end_id)
        return history

    async def condense(
        self,
        events: Sequence[EventBase],
        *,
        reason: str,
        tokens_before: int,
        tools: Sequence[Mapping[str, Any]],
    ) -> CondensationEvent:
        """The event condensing ``events`` (the whole log); ``CondensationFailed`` if not."""
        found = plan(events, self.settings.condensation.keep_turns)
        if found is None:
            raise CondensationFailed(
                "AGENT_CONDENSATION_FAILED", "there is no older history left to condense"
            )
        request = summary_request(found, max_chars=self.settings.max_output_chars)
        try:
            response = await self.llm.complete(request, None)
        except LLMError as exc:
            raise CondensationFailed(exc.code, exc.message) from exc
        summary = (response.content or "").strip() or "(the summary came back empty)"
        turns = sum(
            1
            for m in build_messages(found.events, max_chars=self.settings.max_output_chars)
            if m["role"] == "assistant"
        )
        event = CondensationEvent(
            start_id=found.start_id,
            end_id=found.end_id,
            summary=with_user_messages(summary, found.user_texts),
            turns=turns + (found.previous.turns if found.previous is not None else 0),
            reason="context_error" if reason == "context_error" else "context_window",
            tokens_before=tokens_before,
            model=response.model or self.settings.llm.model,
            prompt_tokens=response.prompt_tokens,
            completion_tokens=response.completion_tokens,
            cost=response.cost,
        )
        after = estimate_tokens(self.view(events, event), tools)
        return event.model_copy(update={"tokens_after": after})


def _as_text(message: Mapping[str, Any]) -> str:
    role = message.get("role", "")
    content = message.get("content")
    if isinstance(content, list):  # text and images
        content = " ".join(str(p.get("text", "[image]")) for p in content)
    parts = [f"{role}: {content}" if content else f"{role}:"]
    for call in message.get("tool_calls") or []:
        function = call.get("function", {})
        parts.append(f"  called {function.get('name')} {function.get('arguments')}")
    return truncate_for_llm("\n".join(parts), MAX_ITEM_CHARS)
