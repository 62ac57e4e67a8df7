"""``ConvoView``: the live notebook view of a conversation, an anywidget.

Its front end is ``static/widget.js``, built from the side panel's TypeScript renderer
(``labextension/src/widget/``), so the notebook and the panel draw every event kind the
same way. The Python side only syncs the header state (a ``state`` trait) and hands events
to the front end in batches through custom messages (``widget/protocol.ts``): each
rendered view asks for its window (the last ``max_rows`` events) once, then gets new
events as they arrive, and earlier ones on demand, so a long history is never resent.

Displayed, the view's bundle carries the widget and a static transcript (``text/html``,
``text/plain``; ``transcript.py``), so a notebook viewed without widgets (nbconvert,
GitHub, plain IPython) still reads as the conversation. ``Conversation.wait()`` refreshes
that transcript.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anywidget
import traitlets

from .transcript import Transcript

if TYPE_CHECKING:
    from IPython.display import DisplayHandle

    from .conversation import Conversation

STATIC = Path(__file__).parent / "static"
DEFAULT_MAX_ROWS = 200
# Events of the static transcript saved with the notebook.
FALLBACK_ROWS = 500
# A button pressed from Python (``click``) answers this view name.
KERNEL_VIEW = "kernel"
# The notice of a view whose conversation a later cell's view took over.
CONTINUED = "The conversation continues in a later cell's view."
# Shown instead of the view in a checkout whose front end was never built.
UNBUILT_ESM = """export default { render({ el }) {
  el.textContent = "jupyter-convo: the widget front end is not built (jlpm build)";
} };"""


def _asset(name: str, missing: str) -> Path | str:
    """A built front-end file, or ``missing`` (anywidget refuses a path that is absent)."""
    path = STATIC / name
    return path if path.is_file() else missing


def widgets_available() -> bool:
    """Whether the live view can show: anywidget installed and the front end built."""
    try:
        import anywidget  # noqa: F401
    except ImportError:
        return False
    return (STATIC / "widget.js").is_file()


class ConvoWidget(anywidget.AnyWidget):
    """The widget model: header state and settings synced; events go as messages."""

    _esm = _asset("widget.js", UNBUILT_ESM)
    _css = _asset("widget.css", "")
    state = traitlets.Dict(help="Header: title, states, metrics, waiting action.").tag(sync=True)
    notice = traitlets.Dict(
        {"text": "", "error": False}, help="The line under the events (errors of buttons)."
    ).tag(sync=True)
    max_rows = traitlets.Int(
        DEFAULT_MAX_ROWS, help="Events shown before older ones fold (default 200)."
    ).tag(sync=True)


class ConvoView:
    """A live view: header, start progress, event rows, confirm bar, message box, buttons."""

    def __init__(
        self, conversation: Conversation, *, after_id: int = -1, max_rows: int | None = None
    ) -> None:
        self.conversation = conversation
        self.after_id = after_id
        self.max_rows = max(1, max_rows or DEFAULT_MAX_ROWS)
        self._lock = threading.RLock()
        # The logged events this view shows (after ``after_id``), in id order.
        self._events: list[dict[str, Any]] = []
        self._ids: list[int] = []
        self._handle: DisplayHandle | None = None
        self._settled = False
        # The last event this view shows, once a later cell's view took the conversation
        # over (``end_at``); None while it follows the conversation.
        self.until_id: int | None = None
        self.widget = ConvoWidget(max_rows=self.max_rows)
        self.widget.add_class("convo-view")
        self.widget.on_msg(self._on_message)
        self._refresh_header()
        conversation.add_listener(self.on_batch)

    # ------------------------------------------------------------------ state for tests/users

    @property
    def state(self) -> dict[str, Any]:
        """The header state the front end shows."""
        return dict(self.widget.state)

    @property
    def notice(self) -> str:
        """The notice line under the events ('' when none)."""
        return str(self.widget.notice.get("text", ""))

    @property
    def event_ids(self) -> list[int]:
        """Ids of the events this view shows (folded or not)."""
        with self._lock:
            return list(self._ids)

    def window(self, before_id: int | None = None, count: int | None = None) -> dict[str, Any]:
        """What a front end gets: ``count`` events before ``before_id`` (default: the last
        ``max_rows``) and ``total``, the number of events so far."""
        with self._lock:
            end = len(self._ids) if before_id is None else bisect.bisect_left(self._ids, before_id)
            start = max(0, end - (count or self.max_rows))
            return {"events": self._events[start:end], "total": len(self._events)}

    # ------------------------------------------------------------------ batches (loop thread)

    def on_batch(self, batch: list[dict[str, Any]]) -> None:
        """Pass new events to the front ends and refresh the header and controls."""
        with self._lock:
            new: list[dict[str, Any]] = []
            for event in batch:
                event_id = int(event.get("id", -1))
                if event_id < 0:
                    if event.get("kind") == "error":  # a refused input, not logged
                        self._set_notice(f"{event.get('code')}: {event.get('message', '')}")
                    continue
                last = self._ids[-1] if self._ids else self.after_id
                if event_id <= last or (self.until_id is not None and event_id > self.until_id):
                    continue
                self._events.append(event)
                self._ids.append(event_id)
                new.append(event)
            if new:
                gap = len(new) > self.max_rows
                self.widget.send(
                    {
                        "type": "append",
                        "events": new[-self.max_rows :] if gap else new,
                        "total": len(self._events),
                        "gap": gap,
                    }
                )
            self._refresh_header()

    def end_at(self, event_id: int) -> None:
        """Show no event after ``event_id``: a later cell's view shows them (each row once
        in the notebook). The notice line says where the conversation went on."""
        with self._lock:
            if self.until_id is not None:
                return
            self.until_id = max(event_id, self._ids[-1] if self._ids else self.after_id)
            self.widget.notice = {"text": CONTINUED, "error": False}

    def _refresh_header(self) -> None:
        snap = self.conversation.snapshot()
        task = snap["start_task"]
        awaiting = snap["awaiting"]
        sandbox = snap["sandbox"]
        metrics = snap["metrics"]
        self.widget.state = {
            "conversation_id": snap["conversation_id"],
            "title": snap["title"],
            "status": snap["status"],
            "agent_state": snap["agent_state"],
            "error": snap["error"],
            "metrics": {
                name: metrics[name]
                for name in ("prompt_tokens", "completion_tokens", "cost", "llm_calls")
            },
            "awaiting": None
            if awaiting is None
            else {
                "id": awaiting.get("id"),
                "kind": awaiting.get("kind"),
                "security_risk": awaiting.get("security_risk", "unknown"),
            },
            "start_task": None
            if task is None
            else {"status": task.get("status"), "detail": task.get("detail")},
            "start_error": snap["error"] if task and task.get("status") == "ERROR" else None,
            "sandbox": None
            if sandbox is None
            else {
                name: sandbox.get(name) for name in ("mechanism", "confined", "network", "message")
            },
        }
        settled = bool(snap["settled"])
        if settled and not self._settled:
            # The agent paused for the user: bring the saved transcript up to date, so the
            # notebook reads right even when nobody called wait().
            self.refresh_display()
        self._settled = settled

    # ------------------------------------------------------------------ messages (main thread)

    def _on_message(self, _widget: Any, content: Mapping[str, Any], _buffers: Any) -> None:
        kind = content.get("type")
        view = str(content.get("view", ""))
        if kind == "sync":
            self._reply(view, "window", self.window())
        elif kind == "earlier":
            before = int(content.get("before_id", 0))
            count = int(content.get("count") or self.max_rows)
            self._reply(view, "earlier", self.window(before, count))
        elif kind in ("send", "confirm", "reject", "stop"):
            ok = self._act(str(kind), str(content.get("text", "")))
            self.widget.send({"type": "done", "view": view, "action": kind, "ok": ok})

    def _reply(self, view: str, kind: str, window: dict[str, Any]) -> None:
        with self._lock:  # ordered with the batches' appends
            self.widget.send({"type": kind, "view": view, **window})

    def _act(self, action: str, text: str) -> bool:
        """Run a button's action; a failure shows as a notice, never as a traceback."""
        try:
            if action == "send":
                if not text.strip():
                    raise ValueError("type a message first")
                self.conversation.send(text)
            elif action == "confirm":
                self.conversation.confirm()
            elif action == "reject":
                self.conversation.reject()
            else:
                self.conversation.stop()
        except Exception as exc:
            self._set_notice(f"{type(exc).__name__}: {exc}")
            return False
        self._set_notice("", error=False)
        return True

    def _set_notice(self, text: str, *, error: bool = True) -> None:
        with self._lock:
            if not text and self.until_id is not None:
                text, error = CONTINUED, False
            self.widget.notice = {"text": text, "error": error and bool(text)}

    def click(self, name: str, text: str = "") -> None:
        """Press a button (send, stop, confirm, reject) as the front end does."""
        self._on_message(self.widget, {"type": name, "view": KERNEL_VIEW, "text": text}, [])

    # ------------------------------------------------------------------ display

    def transcript(self) -> Transcript:
        """The events this view shows, as a static transcript (the saved fallback)."""
        return self.conversation.static(
            after_id=self.after_id, until_id=self.until_id, max_rows=FALLBACK_ROWS
        )

    def _repr_mimebundle_(self, **kwargs: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """The widget, plus the static transcript for places without widgets."""
        rendered = self.widget._repr_mimebundle_(**kwargs)
        data, metadata = rendered if isinstance(rendered, tuple) else (rendered or {}, {})
        static = self.transcript()
        return {
            **data,
            "text/html": static._repr_html_(),
            "text/plain": static.text(),
        }, dict(metadata)

    def display(self) -> None:
        from IPython.display import display

        self._handle = display(self, display_id=True)

    def refresh_display(self) -> None:
        """Re-publish this output so the saved transcript matches the events so far."""
        if self._handle is not None and _in_kernel():
            self._handle.update(self)  # a terminal would print the whole view again

    def close(self) -> None:
        """Stop updating and close the widget."""
        self.conversation.remove_listener(self.on_batch)
        self.widget.close()


def _in_kernel() -> bool:
    from IPython import get_ipython

    return getattr(get_ipython(), "kernel", None) is not None
