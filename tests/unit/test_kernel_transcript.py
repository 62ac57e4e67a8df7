"""The static transcript a notebook saves beside the live widget (nbconvert, GitHub, IPython).

The live rendering of every event kind is the TypeScript renderer's, tested with Jest
(labextension/src/__tests__/render.spec.ts); this is the plain fallback.
"""

from __future__ import annotations

from typing import Any

import pytest

from jupyter_convo.events.schema import (
    CommandEvent,
    EventBase,
    LLMCallEvent,
    MessageEvent,
    PythonOutputEvent,
    event_to_dict,
)
from jupyter_convo.kernel.transcript import Transcript

PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
    "+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def wire(event: EventBase, event_id: int) -> dict[str, Any]:
    return event_to_dict(event.model_copy(update={"id": event_id}))


def test_text_and_html_say_what_happened() -> None:
    events = [
        wire(MessageEvent(source="user", text="hello <b>"), 0),
        wire(LLMCallEvent(model="m", prompt_tokens=3), 1),
        wire(CommandEvent(command="ls"), 2),
    ]
    static = Transcript(events, conversation_id="c1", title="T", state="running")
    assert static.text().splitlines() == [
        "Conversation c1 'T' (running)",
        "[0] user: hello <b>",
        "[2] agent $ ls",
    ]
    html = static._repr_html_()
    assert "hello &lt;b&gt;" in html and "<b>hello" not in html  # escaped, never markup
    assert 'data-event-id="2"' in html and 'data-event-id="1"' not in html  # no llm_call


def test_plots_are_kept_as_images() -> None:
    output = PythonOutputEvent(display_data=[{"image/png": PNG, "text/plain": "<Figure>"}])
    svg = PythonOutputEvent(result={"image/svg+xml": "<svg onload='x()'></svg>"})
    html = Transcript([wire(output, 0), wire(svg, 1)], conversation_id="c1")._repr_html_()
    assert f'src="data:image/png;base64,{PNG}"' in html
    assert 'src="data:image/svg+xml;base64,' in html
    assert "onload" not in html  # inline SVG never reaches the page as markup


@pytest.mark.parametrize("max_rows", [None, 2])
def test_only_the_last_rows_are_kept(max_rows: int | None) -> None:
    events = [wire(MessageEvent(source="agent", text=f"m{i}"), i) for i in range(5)]
    static = Transcript(events, conversation_id="c1", state="finished", max_rows=max_rows)
    html = static._repr_html_()
    if max_rows is None:
        assert "m0" in html and "earlier events not shown" not in html
    else:
        assert "m0" not in html and "m4" in html and "m0" not in static.text()
        assert "3 earlier events not shown" in html
