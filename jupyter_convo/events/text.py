"""Plain-text rendering of events: CLI output and transcripts where widgets cannot render."""

from __future__ import annotations

from typing import Any

MAX_BODY_LINES = 20


def _clip(text: str, max_lines: int = MAX_BODY_LINES) -> str:
    lines = text.rstrip("\n").splitlines()
    if len(lines) <= max_lines:
        return "\n".join(lines)
    head = lines[: max_lines // 2]
    tail = lines[-max_lines // 2 :]
    return "\n".join([*head, f"... ({len(lines) - len(head) - len(tail)} more lines)", *tail])


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


def sandbox_summary(event: dict[str, Any]) -> str:
    """How a ``sandbox`` event isolates the tools, in a few words."""
    if not event.get("confined"):
        return "NOT CONFINED" + (f" ({event['message']})" if event.get("message") else "")
    network = "network on" if event.get("network", True) else "network off"
    return f"confined ({event.get('mechanism')}), {network}"


def event_summary(event: dict[str, Any]) -> str:
    """One line: id, who, and what happened."""
    kind = event.get("kind", "?")
    who = event.get("source", "?")
    head = f"[{event.get('id', '?')}] {who}"
    if kind == "message":
        return (
            f"{head}: {event.get('text', '').strip().splitlines()[0] if event.get('text') else ''}"
        )
    if kind == "command":
        return f"{head} $ {event.get('command', '')}"
    if kind == "command_output":
        return f"{head} exit {event.get('exit_code')}"
    if kind == "python":
        first = (event.get("code") or "").strip().splitlines()
        return f"{head} >>> {first[0] if first else ''}"
    if kind == "python_output":
        error = event.get("error")
        return f"{head} python {'error ' + error['ename'] if error else 'ok'}"
    if kind in ("file_read", "file_edit"):
        return f"{head} {event.get('command', 'view')} {event.get('path', '')}"
    if kind == "file_content":
        return f"{head} read {event.get('path', '')}"
    if kind == "file_edit_result":
        return f"{head} edited {event.get('path', '')}" + (
            f" (error: {event['error']})" if event.get("error") else ""
        )
    if kind == "tool_call":
        asks = " (asks permission)" if event.get("confirmation") == "awaiting" else ""
        return f"{head} [{event.get('tool_kind', 'other')}] {event.get('title', '')}{asks}"
    if kind == "tool_result":
        return f"{head} {event.get('status', 'completed')}: {event.get('title', '')}".rstrip(": ")
    if kind == "plan":
        entries = event.get("entries", [])
        done = sum(1 for e in entries if e.get("status") == "completed")
        return f"{head} plan: {done}/{len(entries)} done"
    if kind == "think":
        return f"{head} (thinking)"
    if kind == "finish":
        return f"{head} finished: {event.get('message', '')}"
    if kind == "agent_state":
        reason = f" ({event['reason']})" if event.get("reason") else ""
        return f"{head} agent is {event.get('state')}{reason}"
    if kind == "status":
        return f"{head} runtime {event.get('status')} {event.get('message', '')}".rstrip()
    if kind == "sandbox":
        return f"{head} sandbox: {sandbox_summary(event)}"
    if kind == "error":
        return f"{head} ERROR {event.get('code')}: {event.get('message', '')}"
    if kind == "title":
        return f"{head} title: {event.get('title')}"
    if kind == "llm_call":
        return (
            f"{head} llm {event.get('model')} {event.get('prompt_tokens')}+"
            f"{event.get('completion_tokens')} tokens ${event.get('cost', 0):.4f}"
        )
    if kind == "condensation":
        return (
            f"{head} history condensed: events {event.get('start_id')}-{event.get('end_id')}"
            f" summarised (~{event.get('tokens_before')} -> ~{event.get('tokens_after')}"
            " tokens)"
        )
    if kind == "confirmation":
        verdict = "confirmed" if event.get("confirmed") else "rejected"
        return f"{head} {verdict} action {event.get('cause')}"
    return f"{head} {kind}"


def event_text(event: dict[str, Any]) -> str:
    """The summary line plus the body worth reading (output, code, diff), clipped."""
    summary = event_summary(event)
    kind = event.get("kind")
    body = ""
    if kind == "message":
        text = event.get("text", "")
        body = text if "\n" in text.strip() else ""
    elif kind == "command_output":
        body = event.get("output", "")
    elif kind == "python":
        body = event.get("code", "")
    elif kind == "python_output":
        parts = [event.get("stdout", ""), event.get("stderr", "")]
        result = event.get("result") or {}
        if "text/plain" in result:
            parts.append(str(result["text/plain"]))
        for bundle in event.get("display_data", []):
            kinds = ", ".join(sorted(bundle))
            parts.append(f"[display: {kinds}]")
        if event.get("error"):
            error = event["error"]
            parts.append(f"{error['ename']}: {error['evalue']}")
        body = "\n".join(p for p in parts if p)
    elif kind == "file_edit_result":
        body = event.get("diff", "")
    elif kind == "file_content":
        body = event.get("content", "")
    elif kind == "condensation":
        body = event.get("summary", "")
    elif kind == "think":
        body = event.get("thought", "")
    elif kind == "tool_result":
        body = "\n".join(p for p in (event.get("output", ""), event.get("diff", "")) if p)
    elif kind == "plan":
        marks = {"completed": "[x]", "in_progress": "[~]"}
        body = "\n".join(
            f"{marks.get(e.get('status', ''), '[ ]')} {e.get('content', '')}"
            for e in event.get("entries", [])
        )
    if not body.strip():
        return summary
    return summary + "\n" + _indent(_clip(body))


def transcript(
    events: list[dict[str, Any]], *, skip_kinds: frozenset[str] = frozenset({"llm_call"})
) -> str:
    return "\n".join(event_text(e) for e in events if e.get("kind") not in skip_kinds)
