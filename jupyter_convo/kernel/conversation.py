"""``Conversation``: one server conversation as a notebook object, kept live over WebSocket.

The object follows the conversation's event stream in the client's loop thread (never the
kernel's main thread, which may be blocked in a cell), so ``events`` grows and views update
while a cell runs. ``wait()`` blocks on a condition the stream signals, not on polling.
Listeners (the live views) get events in batches, at most one batch per ``BATCH_SECONDS``,
so a burst of thousands of events costs a handful of widget updates.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..client import ConvoClient, ConvoClientError
from ..events.text import event_summary, transcript
from .state import ConversationState
from .transcript import Transcript

if TYPE_CHECKING:
    import pandas

    from .widgets import ConvoView

log = logging.getLogger(__name__)

BATCH_SECONDS = 0.1
HISTORY_PAGE = 1000  # events per page when loading a history (the server's maximum)
DEFAULT_WAIT_TIMEOUT = 600.0
# Reconnect delays (seconds) after the event stream drops; then the follower gives up.
RECONNECT_DELAYS = (0.2, 0.5, 1.0, 2.0, 5.0, 5.0, 10.0)

Listener = Callable[[list[dict[str, Any]]], None]


class ConversationError(RuntimeError):
    """The conversation could not start, or its event stream is gone."""


class KernelBusyError(RuntimeError):
    """``wait()`` would block the kernel the agent needs to run its Python code."""


class Conversation:
    """A conversation on the server: its events, state and the actions a user can take."""

    def __init__(
        self,
        client: ConvoClient,
        conversation_id: str,
        *,
        kernel_mode: bool = False,
        start_task: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        history_end: int = -1,
    ) -> None:
        self.client = client
        self.id = conversation_id
        self.kernel_mode = kernel_mode
        self.start_task = start_task
        self._state = ConversationState()
        if metadata:
            self._state.apply_metadata(metadata)
        self._state.history_ends_at(history_end)
        self._events: list[dict[str, Any]] = []
        self._changed = threading.Condition()
        self._listeners: list[Listener] = []
        self._batch: list[dict[str, Any]] = []
        self._flush_scheduled = False
        self._closed = False
        self._follow_error: Exception | None = None
        self._start_failed: str | None = None
        self._shown_in: int | None = None  # execution count of the cell that showed a view
        self._views: list[ConvoView] = []
        # Display preferences (the magics set them from c.ConvoMagics).
        self.live_view = True
        self.max_rows: int | None = None
        if start_task is not None:
            self._apply_start_task(start_task)
        self._follower = client.submit(self._follow())

    # ------------------------------------------------------------------ creating

    @classmethod
    def start(
        cls,
        client: ConvoClient,
        options: dict[str, Any],
        *,
        kernel_mode: bool = False,
        timeout: float = 60.0,
    ) -> Conversation:
        """Create a conversation (``POST conversations/stream-start``) and follow it.

        Returns once the server accepted the request; the runtime keeps starting in the
        background and its progress arrives in ``start_task`` (and the views).
        """
        first: concurrent.futures.Future[Conversation] = concurrent.futures.Future()

        async def run() -> None:
            conversation: Conversation | None = None
            try:
                async for task in client.aio.stream_start(**options):
                    if conversation is None:
                        conversation = cls(
                            client,
                            str(task["conversation_id"]),
                            kernel_mode=kernel_mode,
                            start_task=task,
                        )
                        conversation._on_metadata(await client.aio.get(conversation.id))
                        first.set_result(conversation)
                    else:
                        conversation._on_start_task(task)
            except Exception as exc:
                if conversation is None:
                    first.set_exception(exc)
                else:
                    log.warning("Following the start of %s failed: %s", conversation.id, exc)

        client.submit(run())
        try:
            return first.result(timeout)
        except concurrent.futures.TimeoutError:
            raise ConversationError(
                f"the server did not accept the conversation within {timeout:.0f} s"
            ) from None

    @classmethod
    def attach(cls, client: ConvoClient, conversation_id: str) -> Conversation:
        """Follow an existing conversation from its first event (history, then live)."""
        metadata = client.get(conversation_id)
        history_end = client.count_events(conversation_id) - 1
        conversation = cls(client, conversation_id, metadata=metadata, history_end=history_end)
        return conversation

    # ------------------------------------------------------------------ reading

    @property
    def events(self) -> list[dict[str, Any]]:
        """Every event received so far (a copy), in id order."""
        with self._changed:
            return list(self._events)

    @property
    def title(self) -> str | None:
        return self._state.title

    @property
    def status(self) -> str | None:
        """The conversation status (STARTING, RUNNING, STOPPED, ERROR), as the server folds it."""
        return self._state.status

    @property
    def agent_state(self) -> str | None:
        return self._state.agent_state

    @property
    def last_message(self) -> str | None:
        """The agent's latest message (or its finish message)."""
        return self._state.last_message

    @property
    def metrics(self) -> dict[str, Any]:
        """Tokens, cost, LLM calls and LLM latency so far, from the ``llm_call`` events."""
        with self._changed:
            return self._state.metrics.as_dict()

    @property
    def error(self) -> str | None:
        """Why the conversation failed, if it did."""
        return self._start_failed or self._state.error

    @property
    def pending_action(self) -> dict[str, Any] | None:
        """The action waiting for your confirmation, if any."""
        with self._changed:
            return dict(self._state.awaiting) if self._state.awaiting else None

    @property
    def last_event_id(self) -> int:
        return self._state.last_id

    def snapshot(self) -> dict[str, Any]:
        """A consistent view of the header fields, for renderers in other threads."""
        with self._changed:
            return {
                "conversation_id": self.id,
                "title": self._state.title,
                "status": self._state.status,
                "agent_state": self._state.agent_state,
                "metrics": self._state.metrics.as_dict(),
                "awaiting": dict(self._state.awaiting) if self._state.awaiting else None,
                "sandbox": dict(self._state.fold.sandbox) if self._state.fold.sandbox else None,
                "start_task": dict(self.start_task) if self.start_task else None,
                "settled": self._settled(),
                "error": self.error,
            }

    def to_dataframe(self) -> pandas.DataFrame:
        """One row per event: id, timestamp, source, kind, cause, a summary, then the fields."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError(
                "to_dataframe() needs pandas: pip install pandas "
                "(or install jupyter-convo with its lab extra: pip install 'jupyter-convo[lab]')"
            ) from None

        events = self.events
        frame = pd.DataFrame.from_records(events)
        if frame.empty:
            return pd.DataFrame(columns=["timestamp", "source", "kind", "cause", "summary"])
        frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
        frame["summary"] = [event_summary(e) for e in events]
        leading = ["id", "timestamp", "source", "kind", "cause", "summary"]
        columns = leading + [c for c in frame.columns if c not in leading]
        return frame[columns].set_index("id")

    def transcript(self) -> str:
        """The conversation as plain text (what the CLI prints)."""
        return transcript(self.events)

    # ------------------------------------------------------------------ acting

    def send(self, text: str, image_urls: Sequence[str] = ()) -> None:
        """Send a message; a stopped conversation restarts with it."""
        if not text.strip():
            raise ValueError("the message is empty")
        item = ("message", text)
        with self._changed:
            self._state.expect(item)
        try:
            self.client.send_message(self.id, text, list(image_urls))
        except BaseException:
            with self._changed:
                self._state.forget(item)
            raise

    def confirm(self, action_id: int | None = None, reason: str = "") -> None:
        """Let the action awaiting confirmation run (default: the one waiting now)."""
        self._answer(action_id, True, reason)

    def reject(self, action_id: int | None = None, reason: str = "") -> None:
        """Refuse the action awaiting confirmation; the agent is told and goes on."""
        self._answer(action_id, False, reason)

    def _answer(self, action_id: int | None, confirmed: bool, reason: str) -> None:
        if action_id is None:
            pending = self.pending_action
            if pending is None:
                raise ConversationError("no action is waiting for confirmation")
            action_id = int(pending["id"])
        item = ("confirmation", action_id)
        with self._changed:
            self._state.expect(item)
        try:
            self.client.confirm(self.id, action_id, confirmed, reason)
        except BaseException:
            with self._changed:
                self._state.forget(item)
            raise

    def stop(self) -> None:
        """Stop the agent and its runtime (events stay; ``resume()`` continues)."""
        metadata = self.client.stop(self.id)
        with self._changed:
            self._state.apply_metadata(metadata)
            self._changed.notify_all()

    def resume(self) -> None:
        """Restart the runtime of a stopped conversation; it continues from its log."""
        # Events up to the log's current end are history: wait() needs a later settle.
        last_logged = self.client.count_events(self.id) - 1
        with self._changed:
            self._state.settle_after(last_logged)
        self.client.start(self.id)

    def wait(self, timeout: float | None = DEFAULT_WAIT_TIMEOUT) -> str | None:
        """Block until the agent waits for input or confirmation, or is done; its state.

        Raises ``TimeoutError`` after ``timeout`` seconds, ``ConversationError`` when the
        conversation failed to start or its stream is gone, and ``KernelBusyError`` in
        ``--kernel`` mode when the agent needs this very kernel, which ``wait()`` blocks.
        """
        if self.client.in_loop_thread:
            raise RuntimeError("wait() cannot run in the client's own thread")
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            while not self._settled():
                if self._start_failed:
                    raise ConversationError(f"the conversation did not start: {self._start_failed}")
                if self._follow_error is not None:
                    raise ConversationError(
                        f"lost the event stream of {self.id}: {self._follow_error}"
                    )
                if self._blocks_agent():
                    raise KernelBusyError(
                        "the agent is waiting to run Python in this kernel, which this cell "
                        "keeps busy: end the cell (the agent's code runs next) and watch the "
                        "live view instead of calling wait() in --kernel mode"
                    )
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(
                        f"conversation {self.id} still {self._state.agent_state or 'starting'} "
                        f"after {timeout} s"
                    )
                self._changed.wait(remaining)
            if self._start_failed:
                raise ConversationError(f"the conversation did not start: {self._start_failed}")
            state = self._state.agent_state
        self.refresh_displays()
        return state

    def _settled(self) -> bool:
        return self._state.settled or self._start_failed is not None

    def _blocks_agent(self) -> bool:
        return (
            self.kernel_mode
            and self._state.python_running is not None
            and threading.current_thread() is threading.main_thread()
        )

    # ------------------------------------------------------------------ views

    def view(self, *, after_id: int = -1, max_rows: int | None = None) -> ConvoView:
        """A new live view of this conversation (events after ``after_id``)."""
        from .widgets import ConvoView

        view = ConvoView(self, after_id=after_id, max_rows=max_rows or self.max_rows)
        with self._changed:
            earlier = list(self._views)
            self._views.append(view)
        for shown in earlier:  # they stop where this one starts: no row twice
            shown.end_at(after_id)
        return view

    def static(
        self, *, after_id: int = -1, until_id: int | None = None, max_rows: int | None = None
    ) -> Transcript:
        """The events after ``after_id`` (up to ``until_id``) as a static transcript."""
        snap = self.snapshot()
        last = until_id if until_id is not None else float("inf")
        events = [e for e in self.events if after_id < int(e.get("id", -1)) <= last]
        return Transcript(
            events,
            conversation_id=self.id,
            title=snap["title"],
            state=snap["agent_state"] or snap["status"],
            metrics=snap["metrics"],
            max_rows=max_rows,
        )

    def show(self, *, after_id: int = -1) -> ConvoView | Transcript:
        """Display the live view (a static transcript without widgets) in this cell."""
        from IPython.display import display

        from .widgets import widgets_available

        shown: ConvoView | Transcript
        if self.live_view and widgets_available():
            shown = self.view(after_id=after_id)
            shown.display()
        else:
            shown = self.static(after_id=after_id)
            display(shown)
        self.mark_shown()
        return shown

    @property
    def views(self) -> list[ConvoView]:
        """The live views made by ``view()`` / ``show()``."""
        with self._changed:
            return list(self._views)

    def sync_views(self, timeout: float = 10.0) -> None:
        """Hand every event received so far to the views now (not at the next batch)."""
        if self.client.in_loop_thread:
            self._flush()
            return

        async def flush() -> None:
            self._flush()

        self.client.submit(flush()).result(timeout)

    def refresh_displays(self) -> None:
        """Re-publish the displayed views so saved notebooks hold the transcript so far."""
        self.sync_views()
        for view in self.views:
            view.refresh_display()

    def mark_shown(self) -> None:
        """Remember that this cell already shows a view (its result then adds none)."""
        self._shown_in = _execution_count()

    def _ipython_display_(self) -> None:
        if self._shown_in is not None and self._shown_in == _execution_count():
            return  # the magic that returned us already showed the view in this cell
        self.show()

    def __repr__(self) -> str:
        with self._changed:
            count = len(self._events)
        state = self._state.agent_state or self._state.status or "starting"
        title = f" {self._state.title!r}" if self._state.title else ""
        return f"<Conversation {self.id}{title}: {state}, {count} events>"

    # ------------------------------------------------------------------ listeners

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(batch)`` with the history now, then with each batch of new events.

        Listeners run in the client's loop thread (batches after the history keep order),
        and get an empty batch when only the start task or the metadata changed.
        """

        def register() -> None:
            with self._changed:
                history = list(self._events)
                self._listeners.append(listener)
            self._call(listener, history)

        self.client.call_soon(register)

    def remove_listener(self, listener: Listener) -> None:
        with self._changed:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def close(self) -> None:
        """Stop following the event stream (the conversation itself goes on)."""
        self._closed = True
        self._follower.cancel()

    # ------------------------------------------------------------------ the stream (loop thread)

    async def _follow(self) -> None:
        """Stream events; reconnect (from the last id) when the stream drops or ends."""
        failures = 0
        try:
            await self._load_history()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the stream below reports (or recovers from) it
            log.info("Loading the history of %s failed: %s", self.id, exc)
        while not self._closed:
            received = False
            error: Exception | None = None
            try:
                async for event in self.client.aio.events(self.id, self._state.last_id):
                    received = True
                    self._on_event(event)
                # The server ended the stream: gone (404), or its runtime restarts.
                await self.client.aio.get(self.id)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                status = (
                    exc.status if isinstance(exc, ConvoClientError) else getattr(exc, "code", 0)
                )
                if status in (403, 404):
                    self._fail_stream(exc)
                    return
                log.info("Event stream of %s dropped: %s", self.id, exc)
                error = exc
            if received:
                failures = 0
            if failures >= len(RECONNECT_DELAYS):
                self._fail_stream(error or ConversationError("the event stream keeps closing"))
                return
            await asyncio.sleep(RECONNECT_DELAYS[failures])
            failures += 1

    async def _load_history(self) -> None:
        """Stored events in pages over HTTP: faster than one WebSocket frame per event."""
        page_id: str | None = None
        while not self._closed:
            page = await self.client.aio.search_events(
                self.id, after_id=self._state.last_id, limit=HISTORY_PAGE, page_id=page_id
            )
            with self._changed:
                for event in page["items"]:
                    self._accept(event)
                self._changed.notify_all()
            self._schedule_flush()
            page_id = page.get("next_page_id")
            if not page_id or not page["items"]:
                return

    def _fail_stream(self, exc: Exception) -> None:
        with self._changed:
            self._follow_error = exc
            self._changed.notify_all()
        self._schedule_flush()

    def _on_event(self, event: dict[str, Any]) -> None:
        with self._changed:
            self._accept(event)
            self._changed.notify_all()
        self._schedule_flush()

    def _accept(self, event: dict[str, Any]) -> None:
        """Record one event (caller holds the lock); repeats after a reconnect are dropped."""
        event_id = int(event.get("id", -1))
        if 0 <= event_id <= self._state.last_id:
            return
        if event_id >= 0:
            self._events.append(event)
        self._state.apply(event)
        self._batch.append(event)

    def _on_start_task(self, task: dict[str, Any]) -> None:
        with self._changed:
            self._apply_start_task(task)
            self._changed.notify_all()
        self._schedule_flush()

    def _on_metadata(self, metadata: dict[str, Any]) -> None:
        with self._changed:
            self._state.apply_metadata(metadata)
            self._changed.notify_all()
        self._schedule_flush()

    def _apply_start_task(self, task: dict[str, Any]) -> None:
        self.start_task = task
        if task.get("status") == "ERROR":
            self._start_failed = str(task.get("detail") or "the runtime failed to start")

    def _schedule_flush(self) -> None:
        with self._changed:
            if self._flush_scheduled:
                return
            self._flush_scheduled = True
        self.client.call_later(BATCH_SECONDS, self._flush)

    def _flush(self) -> None:
        with self._changed:
            batch, self._batch = self._batch, []
            self._flush_scheduled = False
            listeners = list(self._listeners)
        for listener in listeners:
            self._call(listener, batch)

    @staticmethod
    def _call(listener: Listener, batch: list[dict[str, Any]]) -> None:
        try:
            listener(batch)
        except Exception:
            log.exception("A conversation view failed to render %d events", len(batch))


def _execution_count() -> int | None:
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    shell = get_ipython()
    return None if shell is None else int(shell.execution_count)
