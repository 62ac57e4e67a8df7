"""Stuck-loop detection: notice an agent that keeps doing the same thing for nothing.

A pure function over recent events, so it can be tested on hand-made logs and gives the
same answer after a restart. Two patterns count as stuck:

- the same action (kind and arguments) with the same result ``repeats`` times in a row,
  within one task (a user message starts a new row);
- the same agent message ``repeats`` times in a row (only user messages in between).

Whatever came before the last ``AGENT_STUCK`` error is ignored, so a user who answers a
stuck agent gets a fresh start.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..events.schema import (
    ACTION_KINDS,
    OBSERVATION_KINDS,
    ActionBase,
    ConfirmationEvent,
    ErrorEvent,
    EventBase,
    MessageEvent,
    event_to_dict,
)

STUCK_CODE = "AGENT_STUCK"
DEFAULT_REPEATS = 3

# Fields that differ between two runs of the same action or the same result.
_ACTION_NOISE = frozenset(
    {"id", "timestamp", "cause", "source", "thought", "tool_call_id", "confirmation",
     "security_risk"}
)  # fmt: skip
# A think action's thought is its argument, not the text around a call.
_THINK_NOISE = _ACTION_NOISE - {"thought"}
_RESULT_NOISE = frozenset({"id", "timestamp", "cause", "source", "tool_call_id", "execution_count"})

Key = tuple[tuple[str, str], ...]


def detect_stuck(events: Sequence[EventBase], *, repeats: int = DEFAULT_REPEATS) -> str | None:
    """Why the agent looks stuck in ``events`` (oldest first), or None if it does not."""
    if repeats < 2:
        raise ValueError(f"repeats must be at least 2, got {repeats}")
    window = _since_last_stuck(events)
    return _repeated_steps(window, repeats) or _repeated_messages(window, repeats)


def _since_last_stuck(events: Sequence[EventBase]) -> Sequence[EventBase]:
    for index in range(len(events) - 1, -1, -1):
        event = events[index]
        if isinstance(event, ErrorEvent) and event.code == STUCK_CODE:
            return events[index + 1 :]
    return events


def _key(event: EventBase, noise: frozenset[str]) -> Key:
    data = event_to_dict(event)
    return tuple(sorted((k, repr(v)) for k, v in data.items() if k not in noise))


def _repeated_steps(events: Sequence[EventBase], repeats: int) -> str | None:
    """The same action with the same outcome ``repeats`` times since the last user message."""
    start = 0
    for index, event in enumerate(events):
        if isinstance(event, MessageEvent) and event.source == "user":
            start = index + 1
    steps: list[tuple[Key, Key | None, str]] = []
    step_of_action: dict[int, int] = {}
    for event in events[start:]:
        if isinstance(event, ActionBase) and event.kind in ACTION_KINDS:
            step_of_action[event.id] = len(steps)
            outcome: Key | None = (("kind", "none"),) if event.kind in ("think", "finish") else None
            noise = _THINK_NOISE if event.kind == "think" else _ACTION_NOISE
            steps.append((_key(event, noise), outcome, event.kind))
        elif isinstance(event, ErrorEvent) and event.tool_name is not None:
            call = (("tool", event.tool_name), ("arguments", event.tool_arguments or ""))
            steps.append((call, (("error", event.message),), "invalid tool call"))
        elif event.cause is not None and event.cause in step_of_action:
            outcome = _outcome(event)
            if outcome is not None:
                index = step_of_action[event.cause]
                action_key, _, kind = steps[index]
                steps[index] = (action_key, outcome, kind)
    done = [step for step in steps if step[1] is not None]
    if len(done) < repeats:
        return None
    last = done[-repeats:]
    if all(step[:2] == last[0][:2] for step in last):
        kind = last[0][2]
        return f"the agent repeated the same {kind} action with the same result {repeats} times"
    return None


def _outcome(event: EventBase) -> Key | None:
    if event.kind in OBSERVATION_KINDS or isinstance(event, ErrorEvent):
        return _key(event, _RESULT_NOISE)
    if isinstance(event, ConfirmationEvent) and not event.confirmed:
        return (("rejected", event.reason),)
    return None


def _repeated_messages(events: Sequence[EventBase], repeats: int) -> str | None:
    """The same agent message ``repeats`` times with only user messages in between."""
    texts: list[str] = []
    for event in events:
        if isinstance(event, MessageEvent) and event.source == "agent":
            texts.append(event.text.strip())
        elif isinstance(event, ActionBase) and event.kind in ACTION_KINDS:
            texts.clear()
    if len(texts) < repeats:
        return None
    last = texts[-repeats:]
    if last[0] and all(text == last[0] for text in last):
        return f"the agent sent the same message {repeats} times"
    return None
