"""The static transcript: what a notebook shows where the live widget cannot run.

nbconvert, GitHub and plain IPython show the ``text/html`` and ``text/plain`` a view saves
beside the widget. Both are made from the events' plain-text form (``events/text.py``, as
the CLI prints them), with the agent's plots kept as images in the HTML. The live views
(the notebook widget, the side panel) render events with the TypeScript renderer instead.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from typing import Any

from ..events.text import event_text, transcript

IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif")
SKIPPED_KINDS = frozenset({"llm_call"})

_STYLE = (
    "<style>.convo-transcript{font-family:var(--jp-ui-font-family,sans-serif);font-size:13px}"
    ".convo-transcript pre{margin:2px 0;padding:4px 8px;white-space:pre-wrap;"
    "border-left:3px solid #d0d7de}.convo-transcript img{max-width:100%}</style>"
)


def _images(event: Mapping[str, Any]) -> list[str]:
    """The plots of a Python output, as ``<img>`` tags with data URLs."""
    if event.get("kind") != "python_output":
        return []
    bundles = [*(event.get("display_data") or []), event.get("result") or {}]
    tags = []
    for bundle in bundles:
        for mime in IMAGE_TYPES:
            if mime in bundle:
                data = html.escape(str(bundle[mime]).replace("\n", ""))
                tags.append(f'<img alt="plot" src="data:{mime};base64,{data}"/>')
                break
        else:
            if "image/svg+xml" in bundle:
                svg = bundle["image/svg+xml"]
                text = "".join(svg) if isinstance(svg, list) else str(svg)
                data = base64.b64encode(text.encode()).decode()
                tags.append(f'<img alt="figure" src="data:image/svg+xml;base64,{data}"/>')
    return tags


def _row(event: Mapping[str, Any]) -> str:
    text = html.escape(event_text(dict(event)))
    return f'<div data-event-id="{html.escape(str(event.get("id")))}"><pre>{text}</pre>' + (
        "".join(_images(event)) + "</div>"
    )


class Transcript:
    """A static transcript: HTML in notebooks and nbconvert, plain text in a terminal."""

    def __init__(
        self,
        events: Sequence[Mapping[str, Any]],
        *,
        conversation_id: str,
        title: str | None = None,
        state: str | None = None,
        metrics: Mapping[str, Any] | None = None,
        max_rows: int | None = None,
    ) -> None:
        self.events = [e for e in events if e.get("kind") not in SKIPPED_KINDS]
        self.conversation_id = conversation_id
        self.title = title
        self.state = state
        self.metrics = dict(metrics or {})
        self.max_rows = max_rows

    def _shown(self) -> tuple[list[Mapping[str, Any]], int]:
        if self.max_rows is None or len(self.events) <= self.max_rows:
            return self.events, 0
        return self.events[-self.max_rows :], len(self.events) - self.max_rows

    def _head(self) -> str:
        title = f" {self.title!r}" if self.title else ""
        head = f"Conversation {self.conversation_id}{title} ({self.state or 'starting'})"
        if self.metrics:
            tokens = int(self.metrics.get("prompt_tokens", 0)) + int(
                self.metrics.get("completion_tokens", 0)
            )
            head += f", {tokens:,} tokens, ${float(self.metrics.get('cost', 0.0)):.4f}"
        return head

    def _repr_html_(self) -> str:
        shown, hidden = self._shown()
        note = (
            f"<p>{hidden} earlier events not shown (<code>%convo show "
            f"{html.escape(self.conversation_id)}</code> shows them all)</p>"
            if hidden
            else ""
        )
        rows = "".join(_row(event) for event in shown)
        return (
            f'{_STYLE}<div class="convo-transcript"><b>{html.escape(self._head())}</b>'
            f"{note}{rows}</div>"
        )

    def text(self) -> str:
        shown, _ = self._shown()
        body = transcript([dict(e) for e in shown], skip_kinds=SKIPPED_KINDS)
        return self._head() + ("\n" + body if body else "")

    def __repr__(self) -> str:
        return self.text()

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(self.text())
