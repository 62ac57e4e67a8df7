"""Events as HTML: shared by the live view (ipywidgets) and the static transcript.

The same fragments fill the widget while it runs and the ``text/html`` fallback saved in
the notebook, so nbconvert, GitHub and plain IPython show a readable transcript instead of
a blank widget. Functions take the wire form of events (dicts, as the server sends them).
Agent text is Markdown with raw HTML escaped; tool output is escaped text; only rich
outputs of the agent's Python (tables, plots) are kept as HTML or images.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

# Longer outputs are folded into a <details> showing how many lines they hold.
FOLD_LINES = 15
# Characters of one output kept in the HTML (the event keeps all of it).
MAX_OUTPUT_CHARS = 20_000
# Agent states worth a row of their own; the others only move the badge.
NOTABLE_STATES = frozenset({"finished", "error", "stopped", "paused", "rate_limited"})
# Kinds that never get a row: they feed the header (metrics, title).
HEADER_ONLY_KINDS = frozenset({"llm_call", "title"})
SETTLED_STATES = frozenset(
    {"awaiting_user_input", "awaiting_user_confirmation", "finished", "error", "stopped", "paused"}
)

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

STYLE = """<style>
.convo-view{font-family:var(--jp-ui-font-family,sans-serif);font-size:13px;line-height:1.45}
.convo-row{margin:4px 0;padding:4px 8px;border-left:3px solid #d0d7de}
.convo-user{border-left-color:#0969da;background:rgba(9,105,218,.06)}
.convo-agent{border-left-color:#8250df}
.convo-env{border-left-color:#d0d7de;color:inherit}
.convo-muted{color:#6e7781;font-size:12px;border-left-color:transparent}
.convo-error{border-left-color:#cf222e;background:rgba(207,34,46,.07)}
.convo-awaiting{border-left-color:#bf8700;background:rgba(191,135,0,.08)}
.convo-row pre{margin:2px 0;padding:4px 6px;white-space:pre-wrap;word-break:break-word;
 background:rgba(127,127,127,.08);font-size:12px;max-height:none}
.convo-row img{max-width:100%}
.convo-row p{margin:2px 0}
.convo-label{font-weight:600;margin-right:6px}
.convo-badge{display:inline-block;padding:0 8px;border-radius:10px;font-size:12px;
 font-weight:600;color:#fff;background:#6e7781;margin-right:6px}
.convo-badge-running,.convo-badge-loading,.convo-badge-STARTING{background:#0969da}
.convo-badge-awaiting_user_input,.convo-badge-finished{background:#1a7f37}
.convo-badge-awaiting_user_confirmation,.convo-badge-paused,.convo-badge-rate_limited{
 background:#bf8700}
.convo-badge-error,.convo-badge-ERROR,.convo-badge-unconfined{background:#cf222e}
.convo-badge-confined{background:#1a7f37}.convo-badge-no-network{background:#57606a}
.convo-diff-add{color:#1a7f37}.convo-diff-del{color:#cf222e}.convo-diff-hunk{color:#8250df}
.convo-metrics{color:#6e7781;font-size:12px}
</style>"""


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def _markdown_renderer() -> Callable[[str], str] | None:
    """mistune (shipped with nbconvert, hence with Jupyter) with raw HTML escaped."""
    try:
        import mistune
    except ImportError:
        return None
    renderer = mistune.create_markdown(
        escape=True, plugins=["strikethrough", "table", "task_lists"]
    )
    return lambda text: str(renderer(text))


_MARKDOWN: list[Callable[[str], str] | None] = []


def markdown_html(text: str) -> str:
    """Markdown to HTML (raw HTML escaped); escaped preformatted text without mistune."""
    if not _MARKDOWN:
        _MARKDOWN.append(_markdown_renderer())
    render = _MARKDOWN[0]
    if render is None:
        return f'<div style="white-space:pre-wrap">{esc(text)}</div>'
    return render(text)


def pre(text: str, css_class: str = "") -> str:
    text = strip_ansi(text)
    if len(text) > MAX_OUTPUT_CHARS:
        dropped = len(text) - MAX_OUTPUT_CHARS
        text = text[:MAX_OUTPUT_CHARS] + f"\n... ({dropped} more characters)"
    attr = f' class="{css_class}"' if css_class else ""
    return f"<pre{attr}>{esc(text)}</pre>"


def foldable(summary: str, body: str, line_count: int, *, open_: bool | None = None) -> str:
    """``body`` in a <details>: open when short (or when ``open_`` says so)."""
    is_open = line_count <= FOLD_LINES if open_ is None else open_
    return f"<details{' open' if is_open else ''}><summary>{summary}</summary>{body}</details>"


def text_block(text: str, label: str, css_class: str = "") -> str:
    """Preformatted output, folded when long."""
    if not text:
        return ""
    lines = len(text.rstrip("\n").splitlines()) or 1
    return foldable(f"{esc(label)} ({lines} lines)", pre(text, css_class), lines)


def diff_html(diff: str) -> str:
    """A unified diff with added, removed and hunk lines coloured."""
    rows = []
    for line in strip_ansi(diff).splitlines():
        if line.startswith("+") and not line.startswith("+++"):
            css = "convo-diff-add"
        elif line.startswith("-") and not line.startswith("---"):
            css = "convo-diff-del"
        elif line.startswith("@@"):
            css = "convo-diff-hunk"
        else:
            css = ""
        rows.append(f'<span class="{css}">{esc(line)}</span>' if css else esc(line))
    lines = len(rows)
    body = "<pre>" + "\n".join(rows) + "</pre>"
    return foldable(f"diff ({lines} lines)", body, lines, open_=lines <= 40)


def mime_html(bundle: Mapping[str, Any]) -> str:
    """The richest safe form of a display bundle: image, HTML table, Markdown, then text."""
    for mime in ("image/png", "image/jpeg", "image/gif"):
        if mime in bundle:
            data = str(bundle[mime]).replace("\n", "")
            return f'<img alt="plot" src="data:{mime};base64,{esc(data)}"/>'
    if "image/svg+xml" in bundle:
        import base64

        svg = bundle["image/svg+xml"]
        svg_text = "".join(svg) if isinstance(svg, list) else str(svg)
        data = base64.b64encode(svg_text.encode()).decode()
        return f'<img alt="figure" src="data:image/svg+xml;base64,{data}"/>'
    if "text/html" in bundle:
        value = bundle["text/html"]
        return "".join(value) if isinstance(value, list) else str(value)
    if "text/markdown" in bundle:
        return markdown_html(str(bundle["text/markdown"]))
    if "text/plain" in bundle:
        return pre(str(bundle["text/plain"]))
    return ""


def _row(css: str, body: str, event_id: object) -> str:
    return f'<div class="convo-row {css}" data-event-id="{esc(event_id)}">{body}</div>'


def _label(text: str) -> str:
    return f'<span class="convo-label">{esc(text)}</span>'


def _action_extras(event: Mapping[str, Any]) -> str:
    """Thought attached to an action, and its confirmation state."""
    parts = []
    if event.get("thought"):
        parts.append(markdown_html(str(event["thought"])))
    confirmation = event.get("confirmation")
    if confirmation == "awaiting":
        risk = event.get("security_risk", "unknown")
        parts.append(f"<div><b>Waiting for your confirmation</b> (risk: {esc(risk)})</div>")
    elif confirmation in ("confirmed", "rejected"):
        parts.append(f'<div class="convo-muted">{esc(confirmation)}</div>')
    return "".join(parts)


def _action_css(event: Mapping[str, Any]) -> str:
    return "convo-awaiting" if event.get("confirmation") == "awaiting" else "convo-agent"


def _message(e: Mapping[str, Any]) -> str:
    who = "You" if e.get("source") == "user" else "Agent"
    images = "".join(
        f'<img alt="attached image" src="{esc(url)}"/>'
        for url in e.get("image_urls") or []
        if str(url).startswith(("data:image/", "https://", "http://"))
    )
    css = "convo-user" if e.get("source") == "user" else "convo-agent"
    return _row(css, _label(who) + markdown_html(str(e.get("text", ""))) + images, e.get("id"))


def _think(e: Mapping[str, Any]) -> str:
    thought = str(e.get("thought", ""))
    body = foldable("Thought", markdown_html(thought), 0, open_=False)
    return _row("convo-agent convo-muted", body, e.get("id"))


def _finish(e: Mapping[str, Any]) -> str:
    body = _label("Finished") + markdown_html(str(e.get("message", "")))
    return _row("convo-agent", body, e.get("id"))


def _command(e: Mapping[str, Any]) -> str:
    body = _label("$") + f"<code>{esc(e.get('command', ''))}</code>" + _action_extras(e)
    return _row(_action_css(e), body, e.get("id"))


def _command_output(e: Mapping[str, Any]) -> str:
    code = e.get("exit_code")
    notes = []
    if e.get("timed_out"):
        notes.append("timed out")
    if e.get("truncated"):
        notes.append("output truncated")
    label = f"exit {code}" + (f", {', '.join(notes)}" if notes else "")
    output = str(e.get("output", ""))
    css = "convo-env" if code in (0, None) else "convo-error"
    body = text_block(output, f"output, {label}") if output else f"<i>{esc(label)}</i>"
    return _row(css, body, e.get("id"))


def _python(e: Mapping[str, Any]) -> str:
    code = str(e.get("code", ""))
    lines = code.count("\n") + 1
    body = foldable("Python", pre(code), lines) + _action_extras(e)
    return _row(_action_css(e), body, e.get("id"))


def _python_output(e: Mapping[str, Any]) -> str:
    parts = [text_block(str(e.get("stdout", "")), "stdout")]
    parts.append(text_block(str(e.get("stderr", "")), "stderr"))
    for bundle in e.get("display_data") or []:
        parts.append(mime_html(bundle))
    if e.get("result"):
        parts.append(mime_html(e["result"]))
    error = e.get("error")
    if error:
        trace = "\n".join(error.get("traceback") or []) or f"{error['ename']}: {error['evalue']}"
        parts.append(text_block(trace, f"{error.get('ename')}: {error.get('evalue')}"))
    if e.get("timed_out"):
        parts.append("<i>timed out</i>")
    body = "".join(p for p in parts if p) or "<i>no output</i>"
    return _row("convo-error" if error else "convo-env", body, e.get("id"))


def _file_read(e: Mapping[str, Any]) -> str:
    body = _label("Read") + f"<code>{esc(e.get('path', ''))}</code>" + _action_extras(e)
    return _row(_action_css(e), body, e.get("id"))


def _file_content(e: Mapping[str, Any]) -> str:
    if e.get("error"):
        return _row("convo-error", esc(e["error"]), e.get("id"))
    content = str(e.get("content", ""))
    lines = content.count("\n") + 1
    body = foldable(f"{esc(e.get('path', ''))} ({lines} lines)", pre(content), 0, open_=False)
    return _row("convo-env", body, e.get("id"))


def _file_edit(e: Mapping[str, Any]) -> str:
    verb = {"create": "Create", "str_replace": "Edit", "insert": "Insert into", "undo": "Undo"}
    label = verb.get(str(e.get("command")), "Edit")
    body = _label(label) + f"<code>{esc(e.get('path', ''))}</code>" + _action_extras(e)
    return _row(_action_css(e), body, e.get("id"))


def _file_edit_result(e: Mapping[str, Any]) -> str:
    if e.get("error"):
        return _row("convo-error", esc(e["error"]), e.get("id"))
    diff = str(e.get("diff", ""))
    body = diff_html(diff) if diff else f"<i>{esc(e.get('path', ''))}: no change</i>"
    return _row("convo-env", body, e.get("id"))


def _confirmation(e: Mapping[str, Any]) -> str:
    verdict = "Confirmed" if e.get("confirmed") else "Rejected"
    reason = f": {esc(e['reason'])}" if e.get("reason") else ""
    return _row(
        "convo-user convo-muted", f"{verdict} action {esc(e.get('cause'))}{reason}", e.get("id")
    )


def _agent_state(e: Mapping[str, Any]) -> str:
    state = str(e.get("state", ""))
    reason = f" ({esc(e['reason'])})" if e.get("reason") else ""
    css = "convo-error" if state == "error" else "convo-muted"
    return _row(css, f"Agent {esc(state.replace('_', ' '))}{reason}", e.get("id"))


def _status(e: Mapping[str, Any]) -> str:
    status = str(e.get("status", ""))
    message = f": {esc(e['message'])}" if e.get("message") else ""
    css = "convo-error" if status == "ERROR" else "convo-muted"
    return _row(css, f"Runtime {esc(status)}{message}", e.get("id"))


def _sandbox(e: Mapping[str, Any]) -> str:
    """Unconfined: a warning row. Confined: a muted row, the mounts folded under it."""
    if not e.get("confined"):
        text = _label("Not confined") + esc(e.get("message") or "the tools run unconfined")
        return _row("convo-error", text, e.get("id"))
    network = "network on" if e.get("network", True) else "network off"
    summary = f"Sandbox: {esc(e.get('mechanism'))}, {network}"
    mounts = list(e.get("mounts") or [])
    if not mounts:
        return _row("convo-muted", summary, e.get("id"))
    lines = []
    for mount in mounts:
        source = f" (from {mount['source']})" if mount.get("source") else ""
        lines.append(f"{mount.get('mode', '?'):6} {mount.get('path', '')}{source}")
    if e.get("home"):
        lines.append(f"HOME   {e['home']}")
    body = foldable(summary, pre("\n".join(lines)), len(lines), open_=False)
    return _row("convo-muted", body, e.get("id"))


def _error(e: Mapping[str, Any]) -> str:
    body = _label("Error") + f"<code>{esc(e.get('code', ''))}</code> {esc(e.get('message', ''))}"
    return _row("convo-error", body, e.get("id"))


def _replay_step(e: Mapping[str, Any]) -> str:
    verdict = str(e.get("verdict", ""))
    head = f"Replay step {esc(e.get('step'))}: {esc(verdict)} (recorded action "
    head += f"{esc(e.get('recorded_event_id'))})"
    diff = str(e.get("diff") or "")
    body = _label(head) + (diff_html(diff) if diff else "")
    return _row("convo-error" if verdict == "diverged" else "convo-muted", body, e.get("id"))


def _replay_summary(e: Mapping[str, Any]) -> str:
    diverged = int(e.get("diverged") or 0)
    text = (
        f"Replay ({esc(e.get('mode'))}): {esc(e.get('reproduced'))} of {esc(e.get('steps'))} "
        f"steps reproduced, {diverged} diverged, {esc(e.get('skipped'))} skipped"
    )
    if e.get("diverged_steps"):
        text += f" (steps {esc(', '.join(str(s) for s in e['diverged_steps']))})"
    if e.get("message"):
        text += f": {esc(e['message'])}"
    return _row("convo-error" if diverged else "convo-env", _label("Replay") + text, e.get("id"))


_RENDERERS: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "message": _message,
    "think": _think,
    "finish": _finish,
    "command": _command,
    "command_output": _command_output,
    "python": _python,
    "python_output": _python_output,
    "file_read": _file_read,
    "file_content": _file_content,
    "file_edit": _file_edit,
    "file_edit_result": _file_edit_result,
    "confirmation": _confirmation,
    "agent_state": _agent_state,
    "status": _status,
    "sandbox": _sandbox,
    "error": _error,
    "replay_step": _replay_step,
    "replay_summary": _replay_summary,
}


def has_row(event: Mapping[str, Any]) -> bool:
    """Whether an event gets a row (metrics, titles and routine states only feed the header)."""
    kind = event.get("kind")
    if kind in HEADER_ONLY_KINDS:
        return False
    if kind == "agent_state":
        return event.get("state") in NOTABLE_STATES
    return True


def event_html(event: Mapping[str, Any]) -> str:
    """One event as an HTML row ('' for events without a row)."""
    if not has_row(event):
        return ""
    render = _RENDERERS.get(str(event.get("kind")))
    if render is None:
        return _row("convo-muted", esc(event.get("kind", "event")), event.get("id"))
    return render(event)


def badge_html(state: str | None) -> str:
    label = (state or "unknown").replace("_", " ")
    return f'<span class="convo-badge convo-badge-{esc(state or "unknown")}">{esc(label)}</span>'


def sandbox_badge_html(sandbox: Mapping[str, Any] | None) -> str:
    """A badge saying how the tools are isolated ('' before the runtime said so)."""
    if sandbox is None:
        return ""
    if not sandbox.get("confined"):
        tip = esc(sandbox.get("message") or "the agent's tools run unconfined")
        return f'<span class="convo-badge convo-badge-unconfined" title="{tip}">unconfined</span>'
    if not sandbox.get("network", True):
        return '<span class="convo-badge convo-badge-no-network">confined, no network</span>'
    return '<span class="convo-badge convo-badge-confined">confined</span>'


def latest_sandbox(events: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The last ``sandbox`` event of ``events``, if any."""
    found = None
    for event in events:
        if event.get("kind") == "sandbox":
            found = event
    return found


def metrics_html(metrics: Mapping[str, Any]) -> str:
    tokens = int(metrics.get("prompt_tokens", 0)) + int(metrics.get("completion_tokens", 0))
    return (
        f'<span class="convo-metrics">{tokens:,} tokens '
        f"({metrics.get('prompt_tokens', 0):,} in, {metrics.get('completion_tokens', 0):,} out)"
        f" &middot; ${float(metrics.get('cost', 0.0)):.4f}"
        f" &middot; {metrics.get('llm_calls', 0)} LLM calls</span>"
    )


def header_html(
    *,
    conversation_id: str,
    title: str | None,
    state: str | None,
    metrics: Mapping[str, Any],
    sandbox: Mapping[str, Any] | None = None,
) -> str:
    name = esc(title) if title else "Conversation"
    return (
        f'<div class="convo-view"><b>{name}</b> <code>{esc(conversation_id)}</code> '
        f"{badge_html(state)}{sandbox_badge_html(sandbox)}{metrics_html(metrics)}</div>"
    )


def transcript_html(
    events: Iterable[Mapping[str, Any]],
    *,
    conversation_id: str,
    title: str | None,
    state: str | None,
    metrics: Mapping[str, Any],
    max_rows: int | None = None,
) -> str:
    """The whole static transcript: style, header and (the last ``max_rows``) rows."""
    rows: list[str] = []
    hidden = 0
    events = list(events)
    for event in reversed(events):  # newest first: older rows past max_rows are counted
        if not has_row(event):
            continue
        if max_rows is not None and len(rows) >= max_rows:
            hidden += 1
        else:
            rows.append(event_html(event))
    rows.reverse()
    note = (
        f'<div class="convo-row convo-muted">{hidden} earlier events not shown '
        f"(<code>%convo show {esc(conversation_id)}</code> shows them all)</div>"
        if hidden
        else ""
    )
    header = header_html(
        conversation_id=conversation_id,
        title=title,
        state=state,
        metrics=metrics,
        sandbox=latest_sandbox(events),
    )
    return f'{STYLE}<div class="convo-view">{header}{note}{"".join(rows)}</div>'


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
        self.events = list(events)
        self.conversation_id = conversation_id
        self.title = title
        self.state = state
        self.metrics = dict(metrics or {})
        self.max_rows = max_rows

    def _repr_html_(self) -> str:
        return transcript_html(
            self.events,
            conversation_id=self.conversation_id,
            title=self.title,
            state=self.state,
            metrics=self.metrics,
            max_rows=self.max_rows,
        )

    def text(self) -> str:
        from ..events.text import transcript

        events = [dict(e) for e in self.events]
        if self.max_rows is not None:
            events = events[-self.max_rows :]
        title = f" {self.title!r}" if self.title else ""
        head = f"Conversation {self.conversation_id}{title} ({self.state or 'starting'})"
        body = transcript(events)
        return head + ("\n" + body if body else "")

    def __repr__(self) -> str:
        return self.text()

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(self.text())
