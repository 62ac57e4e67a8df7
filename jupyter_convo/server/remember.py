"""The remember prompt: turn a moment of a conversation into a lasting instruction.

A user points at an event ("remember this"); we show the conversation's LLM the events
around it and ask for a short instruction to add to the workspace's ``AGENTS.md``, so
future conversations in that workspace follow it. The instruction text is our own.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from ..events.log import EventPage
from ..events.schema import EVENT_KINDS, Event, event_to_dict
from ..events.text import event_text

EVENTS_BEFORE = 4
EVENTS_AFTER = 5
# Bookkeeping events say nothing about the work itself.
HIDDEN_KINDS: tuple[str, ...] = ("agent_state", "status", "llm_call", "title")
_VISIBLE_KINDS: tuple[str, ...] = tuple(k for k in EVENT_KINDS if k not in HIDDEN_KINDS)
# The conversation's events/search (the log's arguments), wherever its events are.
Search = Callable[..., Awaitable[EventPage]]
_TAGGED = re.compile(r"<update_prompt>(.*?)</update_prompt>", re.DOTALL)

SYSTEM_INSTRUCTIONS = """\
You help a user keep lasting notes for an AI agent that works in a Jupyter workspace.
The workspace has a file AGENTS.md whose instructions every future agent reads first.

Below are events from one of the agent's conversations, around the moment the user wants
remembered (marked with >>>). Work out what the agent should know or do differently next
time: a convention of this project, a command that works, a mistake to avoid, a
preference of the user.

Write an instruction for an agent that will update AGENTS.md with that lesson: what to add,
in one or two short imperative sentences, general enough to help in later tasks and
specific enough to act on. Do not mention this conversation or its event numbers.
Answer with the instruction only, between <update_prompt> and </update_prompt>.

Events:
{events}
"""

USER_REQUEST = "Write the instruction for updating AGENTS.md from these events."


async def contextual_events(search: Search, event_id: int) -> list[Event]:
    """Up to ``EVENTS_BEFORE`` visible events up to ``event_id`` (included) and
    ``EVENTS_AFTER`` after it, in order (``search``: the conversation's events/search)."""
    kinds = list(_VISIBLE_KINDS)
    before = await search(before_id=event_id + 1, kind=kinds, reverse=True, limit=EVENTS_BEFORE)
    after = await search(after_id=event_id, kind=kinds, limit=EVENTS_AFTER)
    return [*reversed(before.items), *after.items]


def render_events(events: list[Event], marked_id: int) -> str:
    lines = []
    for event in events:
        prefix = ">>> " if event.id == marked_id else ""
        lines.append(prefix + event_text(event_to_dict(event)))
    return "\n".join(lines)


def build_messages(events: list[Event], marked_id: int) -> list[dict[str, str]]:
    """The chat messages asking the LLM for the instruction."""
    system = SYSTEM_INSTRUCTIONS.format(events=render_events(events, marked_id))
    return [{"role": "system", "content": system}, {"role": "user", "content": USER_REQUEST}]


def extract_prompt(answer: str) -> str:
    """The instruction inside the tags; an untagged answer is taken whole."""
    match = _TAGGED.search(answer)
    text = match.group(1) if match else answer
    return text.strip()
