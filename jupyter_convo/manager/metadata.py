"""Conversation metadata as a fold over the event log.

The log is the truth; the store's row is a cache of the fold (``events.fold``: status,
agent state, tokens, cost, title, last event). Folding the same events always gives the
same fields, so the row can be rebuilt from the log at any time (e.g. after a server
restart). This module only adds the glue to the store's row.
"""

from __future__ import annotations

from typing import Any

from ..events.fold import FATAL_ERROR_CODES, MAX_ERROR_CHARS, ConversationFold, describe_error
from ..store.conversations import ConversationMetadata

RUNTIME_DIED = "RUNTIME_DIED"
TOO_MANY_CONVERSATIONS = "AGENT_ERROR$TOO_MANY_CONVERSATIONS"

__all__ = [
    "FATAL_ERROR_CODES",
    "MAX_ERROR_CHARS",
    "RUNTIME_DIED",
    "TOO_MANY_CONVERSATIONS",
    "MetadataFold",
    "describe_error",
]


class MetadataFold(ConversationFold):
    """The shared fold, continued from and written back to the store's row."""

    @classmethod
    def from_metadata(cls, meta: ConversationMetadata) -> MetadataFold:
        """A fold that continues from the stored row (events up to its last id are in)."""
        return cls(
            last_event_id=meta.last_event_id,
            status=meta.status,
            agent_state=meta.agent_state,
            prompt_tokens=meta.prompt_tokens,
            completion_tokens=meta.completion_tokens,
            cost=meta.cost,
            model=meta.model,
            title=meta.title,
            error=meta.error,
            updated_at=meta.updated_at,
        )

    def snapshot(self, *, include_title: bool = True) -> dict[str, Any]:
        """Every folded field, for a full rewrite of the row (a rebuild from the log)."""
        fields: dict[str, Any] = {
            "last_event_id": self.last_event_id,
            "agent_state": self.agent_state,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost": self.cost,
            "error": self.error,
        }
        names = (
            ("status", "model", "title", "updated_at")
            if include_title
            else (
                "status",
                "model",
                "updated_at",
            )
        )
        for name in names:
            if getattr(self, name) is not None:
                fields[name] = getattr(self, name)
        self._changed.clear()
        return fields
