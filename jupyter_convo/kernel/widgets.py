"""``ConvoView``: the live ipywidgets view of a conversation, with its controls.

Rows are HTML from ``render`` grouped into chunk widgets of ``CHUNK_ROWS`` rows, so a batch
of events changes one or two widgets instead of adding hundreds; only the last ``max_rows``
rows are on screen (and rendered) and older ones fold behind a "Show earlier events"
button. Batches come from the ``Conversation`` (the client's loop thread); buttons call back
on the kernel's main thread; a lock keeps both consistent.

Displayed, the view's bundle carries the widget and a static transcript (``text/html``,
``text/plain``), so a notebook viewed without widgets (nbconvert, GitHub, plain IPython)
still reads as the conversation. ``Conversation.wait()`` refreshes that transcript.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .render import STYLE, Transcript, event_html, has_row, header_html

if TYPE_CHECKING:
    import ipywidgets
    from IPython.display import DisplayHandle

    from .conversation import Conversation

CHUNK_ROWS = 50
DEFAULT_MAX_ROWS = 200
# Rows of the static transcript saved with the notebook.
FALLBACK_ROWS = 500
START_STEPS = (
    "WORKING",
    "WAITING_FOR_SANDBOX",
    "PREPARING_WORKSPACE",
    "STARTING_CONVERSATION",
    "READY",
)
HIDDEN = "none"


def widgets_available() -> bool:
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


class ConvoView:
    """A live view: header, start progress, event rows, confirm bar, message box, buttons."""

    def __init__(
        self,
        conversation: Conversation,
        *,
        after_id: int = -1,
        max_rows: int | None = None,
        chunk_rows: int = CHUNK_ROWS,
    ) -> None:
        import ipywidgets as w

        self.conversation = conversation
        self.after_id = after_id
        self.max_rows = max(1, max_rows or DEFAULT_MAX_ROWS)
        self.chunk_rows = max(1, chunk_rows)
        self._lock = threading.RLock()
        # Events that get a row, and their HTML once rendered: rows are rendered when they
        # first come on screen, so a long folded history costs nothing until unfolded.
        self._rows: list[dict[str, Any]] = []
        self._row_html: dict[int, str] = {}
        self._row_ids: list[int] = []
        self._chunk_widgets: dict[int, ipywidgets.HTML] = {}
        self._visible_rows = self.max_rows
        self._handle: DisplayHandle | None = None
        self._settled = False

        self.header = w.HTML()
        self.progress = w.IntProgress(
            value=0, min=0, max=len(START_STEPS), description="Starting", bar_style="info"
        )
        self.progress_label = w.HTML()
        self.progress_box = w.HBox([self.progress, self.progress_label])
        self.earlier_button = w.Button(description="Show earlier events", icon="angle-up")
        self.earlier_button.layout.display = HIDDEN
        self.log_box = w.VBox(layout=w.Layout(max_height="600px", overflow="auto"))
        self.confirm_label = w.HTML()
        self.confirm_button = w.Button(description="Confirm", button_style="success", icon="check")
        self.reject_button = w.Button(description="Reject", button_style="warning", icon="times")
        self.confirm_box = w.HBox([self.confirm_label, self.confirm_button, self.reject_button])
        self.confirm_box.layout.display = HIDDEN
        self.input = w.Textarea(
            placeholder="Message the agent", layout=w.Layout(width="70%", height="3.2em")
        )
        self.send_button = w.Button(description="Send", button_style="primary", icon="paper-plane")
        self.stop_button = w.Button(description="Stop", button_style="danger", icon="stop")
        self.notice = w.HTML()
        self.widget = w.VBox(
            [
                w.HTML(STYLE),
                self.header,
                self.progress_box,
                self.earlier_button,
                self.log_box,
                self.confirm_box,
                w.HBox([self.input, self.send_button, self.stop_button]),
                self.notice,
            ],
            layout=w.Layout(border="1px solid #d0d7de", padding="4px"),
        )
        self.widget.add_class("convo-view")

        self.send_button.on_click(lambda _: self._act(self._send))
        self.stop_button.on_click(lambda _: self._act(self.conversation.stop))
        self.confirm_button.on_click(lambda _: self._act(self.conversation.confirm))
        self.reject_button.on_click(lambda _: self._act(self.conversation.reject))
        self.earlier_button.on_click(lambda _: self.show_earlier())
        self._refresh_header()
        conversation.add_listener(self.on_batch)

    # ------------------------------------------------------------------ state for tests/users

    @property
    def row_count(self) -> int:
        """Events rendered as rows (on screen or folded)."""
        with self._lock:
            return len(self._rows)

    @property
    def row_ids(self) -> list[int]:
        with self._lock:
            return list(self._row_ids)

    @property
    def visible_row_count(self) -> int:
        with self._lock:
            return min(len(self._rows), self._visible_start_chunk_rows())

    def html(self) -> str:
        """The HTML of the rows on screen (what the chunk widgets hold)."""
        with self._lock:
            return "".join(widget.value for widget in self.log_box.children)

    # ------------------------------------------------------------------ batches (loop thread)

    def on_batch(self, batch: list[dict[str, Any]]) -> None:
        """Render new events and refresh the header and controls."""
        with self._lock:
            added = False
            for event in batch:
                event_id = int(event.get("id", -1))
                if event_id < 0:
                    self.notice.value = event_html(event)  # a refused input, not logged
                    continue
                if event_id <= self.after_id or not has_row(event):
                    continue
                self._rows.append(event)
                self._row_ids.append(event_id)
                added = True
            if added:
                self._render_tail()
            self._refresh_header()

    def _first_visible_chunk(self) -> int:
        last_chunk = (len(self._rows) - 1) // self.chunk_rows
        chunks_shown = -(-self._visible_rows // self.chunk_rows)
        return max(0, last_chunk - chunks_shown + 1)

    def _visible_start_chunk_rows(self) -> int:
        return len(self._rows) - self._first_visible_chunk() * self.chunk_rows

    def _row(self, index: int) -> str:
        html = self._row_html.get(index)
        if html is None:
            html = self._row_html[index] = event_html(self._rows[index])
        return html

    def _chunk_html(self, index: int) -> str:
        start = index * self.chunk_rows
        end = min(start + self.chunk_rows, len(self._rows))
        return "".join(self._row(i) for i in range(start, end))

    def _render_tail(self) -> None:
        """Update the chunks that changed; fold chunks that left the window."""
        import ipywidgets as w

        first = self._first_visible_chunk()
        last = (len(self._rows) - 1) // self.chunk_rows
        previous_last = max(self._chunk_widgets, default=-1)
        for index in range(max(first, min(previous_last, last)), last + 1):
            html = self._chunk_html(index)
            widget = self._chunk_widgets.get(index)
            if widget is None:
                self._chunk_widgets[index] = w.HTML(html)
            elif widget.value != html:
                widget.value = html
        self._arrange(first, last)

    def _arrange(self, first: int, last: int) -> None:
        import ipywidgets as w

        for index in [i for i in self._chunk_widgets if i < first]:
            self._chunk_widgets.pop(index).close()
        for index in range(first, last + 1):
            if index not in self._chunk_widgets:
                self._chunk_widgets[index] = w.HTML(self._chunk_html(index))
        children = tuple(self._chunk_widgets[i] for i in range(first, last + 1))
        if children != self.log_box.children:
            self.log_box.children = children
        hidden = first * self.chunk_rows
        if hidden:
            self.earlier_button.description = f"Show earlier events ({hidden} folded)"
            self.earlier_button.layout.display = None
        else:
            self.earlier_button.layout.display = HIDDEN

    def show_earlier(self) -> None:
        """Unfold ``max_rows`` more of the older rows."""
        with self._lock:
            self._visible_rows += self.max_rows
            if self._rows:
                self._arrange(self._first_visible_chunk(), (len(self._rows) - 1) // self.chunk_rows)

    def _refresh_header(self) -> None:
        snap = self.conversation.snapshot()
        self.header.value = header_html(
            conversation_id=snap["conversation_id"],
            title=snap["title"],
            state=snap["agent_state"] or snap["status"],
            metrics=snap["metrics"],
            sandbox=snap["sandbox"],
        )
        self._refresh_progress(snap["start_task"], snap["error"])
        awaiting = snap["awaiting"]
        if awaiting is not None:
            self.confirm_label.value = (
                f"<b>Action {awaiting.get('id')}</b> ({awaiting.get('kind')}, risk "
                f"{awaiting.get('security_risk', 'unknown')}) waits for your confirmation"
            )
            self.confirm_box.layout.display = None
        else:
            self.confirm_box.layout.display = HIDDEN
        self.stop_button.disabled = snap["status"] in ("STOPPED", "ERROR", "ARCHIVED")
        settled = bool(snap["settled"])
        if settled and not self._settled:
            # The agent paused for the user: bring the saved transcript up to date, so the
            # notebook reads right even when nobody called wait().
            self.refresh_display()
        self._settled = settled

    def _refresh_progress(self, task: Mapping[str, Any] | None, error: str | None) -> None:
        if task is None or task.get("status") == "READY":
            self.progress_box.layout.display = HIDDEN
            return
        status = str(task.get("status"))
        self.progress_box.layout.display = None
        if status == "ERROR":
            self.progress.bar_style = "danger"
            self.progress.description = "Failed"
            self.progress_label.value = f"<b>could not start</b>: {error or task.get('detail')}"
            return
        step = START_STEPS.index(status) + 1 if status in START_STEPS else 1
        self.progress.value = step
        self.progress_label.value = status.replace("_", " ").lower()

    # ------------------------------------------------------------------ controls (main thread)

    def _send(self) -> None:
        text = self.input.value.strip()
        if not text:
            raise ValueError("type a message first")
        self.conversation.send(text)
        self.input.value = ""

    def _act(self, action: Callable[[], object]) -> None:
        """Run a button's action; a failure shows as a notice, never as a traceback."""
        try:
            action()
        except Exception as exc:
            with self._lock:
                self.notice.value = (
                    f'<span style="color:#cf222e">{type(exc).__name__}: {exc}</span>'
                )
        else:
            with self._lock:
                self.notice.value = ""

    def click(self, name: str) -> None:
        """Press a button by name (send, stop, confirm, reject, earlier), as a user would."""
        buttons = {
            "send": self.send_button,
            "stop": self.stop_button,
            "confirm": self.confirm_button,
            "reject": self.reject_button,
            "earlier": self.earlier_button,
        }
        buttons[name].click()

    # ------------------------------------------------------------------ display

    def transcript(self) -> Transcript:
        """The events this view shows, as a static transcript (the saved fallback)."""
        return self.conversation.static(after_id=self.after_id, max_rows=FALLBACK_ROWS)

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        bundle: dict[str, Any] = dict(self.widget._repr_mimebundle_(**kwargs) or {})
        static = self.transcript()
        bundle["text/html"] = static._repr_html_()
        bundle["text/plain"] = static.text()
        return bundle

    def display(self) -> None:
        from IPython.display import display

        self._handle = display(self, display_id=True)

    def refresh_display(self) -> None:
        """Re-publish this output so the saved transcript matches the events so far."""
        if self._handle is not None and _in_kernel():
            self._handle.update(self)  # a terminal would print the whole view again

    def close(self) -> None:
        """Stop updating and close the widgets."""
        self.conversation.remove_listener(self.on_batch)
        with self._lock:
            for widget in self._chunk_widgets.values():
                widget.close()
            self._chunk_widgets.clear()
            self._close_tree(self.widget)

    @staticmethod
    def _close_tree(widget: Any) -> None:
        for child in getattr(widget, "children", ()):
            ConvoView._close_tree(child)
        widget.close()


def _in_kernel() -> bool:
    from IPython import get_ipython

    return getattr(get_ipython(), "kernel", None) is not None
