"""`jupyter convo ...`: drive conversations from a terminal through the server API."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from .client import (
    FAILED_STATES,
    ConvoClient,
    ConvoClientError,
    ServerNotFound,
    ends_activity,
    sandbox_problem,
)
from .events.text import event_text, transcript
from .image import add_build_image_command
from .share.cli import add_share_commands

# Exit status of a `--follow` that ends with the agent failed (error, rate limited, the
# runtime gone) or with the stream closed before the agent rested.
EXIT_AGENT_FAILED = 1


def _age(timestamp: str | None) -> str:
    if not timestamp:
        return "-"
    then = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    seconds = int((datetime.now(timezone.utc) - then).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{max(seconds, 0)}s ago"


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    lines = [
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def _follow(client: ConvoClient, conversation_id: str, after_id: int) -> int:
    """Print events as they arrive until the agent rests (waits, finishes, fails).

    Returns the exit status: 0 when the agent rests in good order (waiting for you,
    finished, stopped), ``EXIT_AGENT_FAILED`` when it failed or the stream ended first.
    """
    last: dict[str, Any] | None = None  # the event that ended the stream
    error: dict[str, Any] | None = None  # the last error event, which says why
    for event in client.events(conversation_id, after_id=after_id, until_idle=True):
        if event.get("kind") != "llm_call":
            print(event_text(event), flush=True)
        if event.get("kind") == "error":
            error = event
        last = event
    if last is not None and ends_activity(last):
        if last.get("kind") == "agent_state" and last.get("state") not in FAILED_STATES:
            return 0
        why = f"the agent is {last.get('state')}" if last.get("kind") == "agent_state" else ""
    else:
        why = "the event stream ended before the agent rested"
    if error is not None:
        why = "; ".join(filter(None, [why, f"{error.get('code')}: {error.get('message', '')}"]))
    print(f"jupyter convo: conversation {conversation_id}: {why}", file=sys.stderr)
    return EXIT_AGENT_FAILED


def cmd_list(client: ConvoClient, args: argparse.Namespace) -> int:
    page = client.search(limit=args.limit, status=args.status, title__contains=args.search)
    items = page["items"]
    if not items:
        print("No conversations.")
        return 0
    rows = [
        [
            c["id"],
            c.get("status", ""),
            c.get("agent_state") or "",
            (c.get("title") or "")[:50],
            _age(c.get("updated_at")),
            f"${c.get('cost', 0):.4f}",
        ]
        for c in items
    ]
    print(_table(rows, ["ID", "STATUS", "AGENT", "TITLE", "UPDATED", "COST"]))
    if page.get("next_page_id"):
        print(f"(more: showing the newest {len(items)})")
    return 0


def cmd_show(client: ConvoClient, args: argparse.Namespace) -> int:
    meta = client.get(args.id)
    print(f"{meta.get('title') or '(untitled)'}  [{meta['id']}]")
    tokens = f"{meta.get('prompt_tokens', 0)}+{meta.get('completion_tokens', 0)}"
    print(
        f"status {meta.get('status')}, agent {meta.get('agent_state') or '-'}, "
        f"model {meta.get('model') or '-'}, tokens {tokens}, cost ${meta.get('cost', 0):.4f}"
    )
    events = client.all_events(args.id)
    print(transcript(events))
    if args.follow:
        if meta.get("status") not in ("STARTING", "RUNNING"):
            print(f"(the conversation is {meta.get('status')}: nothing to follow)")
            return 0
        return _follow(client, args.id, events[-1]["id"] if events else -1)
    return 0


def cmd_capabilities(client: ConvoClient, args: argparse.Namespace) -> int:
    offered = client.capabilities()
    rows = [
        [
            info["kind"] + (" (default)" if info["kind"] == offered["default_sandbox"] else ""),
            "yes" if info["available"] else f"no: {info['reason']}",
            info["description"],
        ]
        for info in offered["sandboxes"]
    ]
    print(_table(rows, ["sandbox", "available", "description"]))
    agents = [agent["name"] for agent in offered["agents"]]
    print(f"\nagent backends: {', '.join(agents) or '(the built-in agent only)'}")
    return 0


def cmd_start(client: ConvoClient, args: argparse.Namespace) -> int:
    if args.sandbox is not None:
        problem = sandbox_problem(client.capabilities(), args.sandbox)
        if problem is not None:
            print(f"jupyter convo start: {problem}", file=sys.stderr)
            return 2
    options: dict[str, Any] = {"initial_message": args.task, "trigger": "cli"}
    for key, value in (
        ("title", args.title),
        ("model", args.model),
        ("sandbox", args.sandbox),
        ("agent", args.agent),
        ("workspace", args.workspace),
        ("max_iterations", args.max_iterations),
        ("max_budget_per_task", args.budget),
        ("repository", args.repository),
        ("branch", args.branch),
    ):
        if value is not None:
            options[key] = value
    if args.confirm:
        options["confirmation_mode"] = args.confirm
    if args.no_network:
        options["network"] = False
    task: dict[str, Any] = {}
    for task in client.stream_start(**options):
        print(
            f"start task {task['status']}" + (f": {task['detail']}" if task.get("detail") else ""),
            flush=True,
        )
    if task.get("status") != "READY":
        return 1
    conversation_id = task["conversation_id"]
    print(f"conversation {conversation_id}")
    if args.follow:
        return _follow(client, conversation_id, -1)
    return 0


def cmd_send(client: ConvoClient, args: argparse.Namespace) -> int:
    before = client.count_events(args.id)
    client.send_message(args.id, args.message)
    print("sent")
    if args.follow:
        return _follow(client, args.id, before - 1)
    return 0


def cmd_stop(client: ConvoClient, args: argparse.Namespace) -> int:
    client.stop(args.id)
    print(f"stopped {args.id}")
    return 0


def cmd_resume(client: ConvoClient, args: argparse.Namespace) -> int:
    client.start(args.id)
    print(f"resumed {args.id}")
    return 0


def cmd_delete(client: ConvoClient, args: argparse.Namespace) -> int:
    if not args.yes:
        answer = input(f"Delete conversation {args.id} with its log and workspace? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("kept")
            return 1
    client.delete(args.id)
    print(f"deleted {args.id}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jupyter convo",
        description="Run and watch AI agent conversations on a Jupyter server with jupyter-convo.",
        epilog=(
            "The server is found from JUPYTER_CONVO_URL and JUPYTER_CONVO_TOKEN, "
            "else among the running Jupyter servers."
        ),
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="list conversations, newest first")
    p.add_argument("--status", help="only this status (RUNNING, STOPPED, ERROR, ...)")
    p.add_argument("--search", help="only titles containing this text")
    p.add_argument("--limit", type=int, default=20)
    p.set_defaults(run=cmd_list)

    p = sub.add_parser("show", help="a conversation's details and transcript")
    p.add_argument("id")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing live events")
    p.set_defaults(run=cmd_show)

    p = sub.add_parser("start", help="start a conversation with a task")
    p.add_argument("task")
    p.add_argument("--title")
    p.add_argument("--model")
    p.add_argument(
        "--sandbox", help="a sandbox kind the server offers (jupyter convo capabilities)"
    )
    p.add_argument("--agent", help="the agent backend (default: the server's; see docs/agents.md)")
    p.add_argument("--workspace", help="workspace folder (default: a new one per conversation)")
    confirm = p.add_mutually_exclusive_group()
    confirm.add_argument(
        "--confirm",
        action="store_const",
        const="risky",
        help="ask before risky actions (high or unrated risk, after the security analyzer)",
    )
    confirm.add_argument(
        "--confirm-all",
        dest="confirm",
        action="store_const",
        const="always",
        help="ask before every action but thinking and finishing",
    )
    p.add_argument("--max-iterations", type=int)
    p.add_argument("--budget", type=float, help="maximum cost in USD")
    p.add_argument(
        "--repository",
        help="start the workspace as a clone of this git URL or local path "
        "(token from your secrets: GITHUB_TOKEN, GITLAB_TOKEN, ... or GIT_TOKEN)",
    )
    p.add_argument("--branch", help="the branch to clone (default: the repository's)")
    p.add_argument(
        "--no-network",
        action="store_true",
        help="cut the network of the agent's commands and Python (process sandbox)",
    )
    p.add_argument("--follow", "-f", action="store_true", help="print events until the agent rests")
    p.set_defaults(run=cmd_start)

    p = sub.add_parser("capabilities", help="the sandbox kinds and agent backends on offer")
    p.set_defaults(run=cmd_capabilities)

    p = sub.add_parser("send", help="send a message to a conversation")
    p.add_argument("id")
    p.add_argument("message")
    p.add_argument("--follow", "-f", action="store_true")
    p.set_defaults(run=cmd_send)

    for name, run, text in (
        ("stop", cmd_stop, "stop a conversation's agent and runtime"),
        ("resume", cmd_resume, "restart a stopped conversation from its log"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("id")
        p.set_defaults(run=run)

    p = sub.add_parser("delete", help="delete a conversation, its log and workspace")
    p.add_argument("id")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask")
    p.set_defaults(run=cmd_delete)

    p = sub.add_parser("agents", help="the agent backends and which external agents are installed")
    p.set_defaults(run_local=cmd_agents)

    add_share_commands(sub)  # export, import, replay, notebook
    add_build_image_command(sub)  # needs a Docker engine, not a Jupyter server
    return parser


def cmd_agents(args: argparse.Namespace) -> int:
    """The agent backends installed with this package, and which external agents are found
    here (a local look: the same machine as a process-sandbox server)."""
    from .runtime.agents import DEFAULT_AGENT, agent_names
    from .runtime.agents.registry import AGENTS_PATH_ENV, KNOWN_AGENTS

    print(f"{'AGENT':<10} {'LLM API':<18} INSTALLED")
    for name in agent_names():
        known = KNOWN_AGENTS.get(name)
        if name == DEFAULT_AGENT:
            print(f"{name:<10} {'Chat Completions':<18} yes (built in)")
        elif known is None:
            print(f"{name:<10} {'-':<18} registered by a package")
        else:
            path = known.find()
            found = f"yes ({path})" if path else f"no: {known.install}"
            print(f"{name:<10} {known.llm_api:<18} {found}")
    print(f"(external agents are looked for in ${AGENTS_PATH_ENV}, then PATH)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if hasattr(args, "run_local"):
        return int(args.run_local(args))
    try:
        with ConvoClient() as client:
            return int(args.run(client, args))
    except ServerNotFound as exc:
        print(f"jupyter convo: {exc.message}", file=sys.stderr)
        return 2
    except ConvoClientError as exc:
        print(f"jupyter convo: the server answered {exc.status}: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
