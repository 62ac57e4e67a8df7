"""``%convo`` and ``%%convo``: start, steer and watch agent conversations from a notebook.

Everything goes through the server API (``jupyter_convo.client``). Errors a user can fix
(a bad flag, no server, a refused request) print one clear message, never a traceback.
Configure with ``c.ConvoMagics.*`` (``ipython_config.py`` / ``ipython_kernel_config.py``)
or at run time with ``%config ConvoMagics.default_model = "gpt-4o"``.
"""

from __future__ import annotations

import argparse
import html
import os
import shlex
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar, cast

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from traitlets import Bool, Float, Int, Unicode

from ..share.arguments import (
    add_export_arguments,
    add_import_arguments,
    add_notebook_arguments,
    add_replay_arguments,
)

if TYPE_CHECKING:  # the client (httpx) loads on first use: %load_ext stays fast
    from ..client import ConvoClient
    from .conversation import Conversation

_F = TypeVar("_F", bound=Callable[..., Any])


def _named_cell_magic(name: str) -> Callable[[_F], _F]:
    """``cell_magic(name)`` with one type across IPython 8 (untyped) and 9 (a union)."""
    return cast("Callable[[_F], _F]", cell_magic(name))


USAGE = """\
%convo start "task" [--model M] [--sandbox KIND] [--agent NAME] [--workspace DIR]
             [--confirm] [--confirm-all] [--no-confirm] [--title T] [--max-iterations N]
             [--budget USD] [--no-network] [--kernel] [--repository URL [--branch B]]
%convo send [ID] "message"     %convo stop [ID]     %convo resume [ID]
%convo show [ID]               %convo list [--limit N] [--status S]
%convo status [ID]             %convo help
%convo export [ID] [-o PATH] [--workspace]   %convo import PATH
%convo replay SOURCE [--mode actions|cassette] [--local DIR] [--no-view]
%convo notebook [SOURCE] [-o PATH]
%%convo [ID] [start flags]     (the cell body is the message)"""

HELP = f"""Run, watch and steer AI agent conversations from this notebook.

{USAGE}

start     Start a conversation on TASK and show its live view. `conv = %convo start ...`
          gives a Conversation: conv.send(msg), conv.wait(timeout), conv.stop(),
          conv.confirm() / conv.reject(), conv.events, conv.to_dataframe(),
          conv.last_message, conv.metrics.
            --model M            LLM model (default: c.ConvoMagics.default_model, then
                                 your settings / the server's)
            --sandbox KIND       where the runtime runs: a kind the server offers
                                 (%convo status lists them; default: the server's)
            --agent NAME         the agent backend (default: the server's, usually
                                 builtin; `jupyter convo agents` lists them)
            --workspace DIR      the agent's working directory (relative to this
                                 notebook; must be inside the Jupyter root)
            --confirm            ask before risky actions (confirmation mode: high or
                                 unrated risk, as the security analyzer sees it)
            --confirm-all        ask before every action but thinking and finishing
            --no-confirm         never ask (also in --kernel mode)
            --title T            the conversation's title
            --repository URL     start the workspace as a clone of a git URL or path
            --branch B           the branch to clone
            --max-iterations N   stop after N agent steps
            --budget USD         stop once the LLM cost reaches USD
            --no-network         cut the network of the agent's commands and Python
                                 (process sandbox; kept when the conversation restarts)
            --kernel             the agent's python tool runs in THIS kernel: it sees and
                                 can build on your variables. NOT CONFINED: that code
                                 runs with everything this kernel can reach (your files,
                                 your network), whatever the sandbox does for the shell.
                                 Process sandbox only; confirmation mode is on by
                                 default (keep it on). The agent's code is queued by the
                                 kernel between your cells, so the notebook stays
                                 usable; do not block the kernel (conv.wait()) while the
                                 agent needs it.
            --no-view            do not show the live view
send      Send a message (a stopped conversation restarts with it).
stop      Stop the agent and its runtime; the events stay.
resume    Restart a stopped conversation; it continues from its event log.
show      Show the live view again, history first (e.g. after reopening a notebook).
list      Your conversations as a table.
status    The server, and the state, tokens and cost of a conversation.
export    Download a conversation as an export zip: events, LLM exchanges, a manifest,
          no secret.
            -o, --output PATH  the zip to write (default <id>.convo.zip)
            --workspace        add the workspace's files
import    Upload an export (a zip or an unpacked export folder) as a new conversation.
replay    Replay a conversation (ID) or a local export (PATH) step by step in a fresh
          runtime, showing each step reproduced or diverged, then go on live.
            --mode actions    re-run the recorded actions, no LLM (the default)
            --mode cassette   the agent runs again with the recorded LLM answers
            --local DIR       replay here without a server, into the new folder DIR
            --no-view         do not show the live view
notebook  Save a conversation (ID) or a local export (PATH, converted here) as a notebook
          that re-runs its steps.
            -o, --output PATH  the notebook to write (default <id>.ipynb)
help      This text (also `%convo?`).
%%convo   The cell body is the message: to conversation ID, or a new conversation.

export, import, replay and notebook take the same arguments as `jupyter convo` in a
terminal; here the ID may be left out.

Without ID, commands act on this notebook's current conversation (the last one started or
shown). Set c.ConvoMagics.server_url / token to choose the server; by default it comes
from JUPYTER_CONVO_URL / JUPYTER_CONVO_TOKEN, else from the running Jupyter servers.
"""


KERNEL_MODE_INSTRUCTIONS = (
    "Your python tool runs in the user's own notebook kernel: the variables, imports and "
    "data the user loaded there are available (look before you load anything again), and "
    "what you define stays for the user's next cells. Do not restart or exit the kernel, "
    "do not delete the user's variables unless asked, and keep each call short: the user's "
    "cells wait behind your code. Its working directory is the notebook's folder."
)


class _HelpShown(Exception):
    """argparse printed help: nothing more to do."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag as one UsageError line plus the usage."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"%convo: {message}\n{USAGE}")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            print(message, file=sys.stderr)
        raise _HelpShown()


def _repository_arg(value: str | None) -> str | None:
    """A local repository path relative to this notebook, as ``--workspace`` is; URLs
    (``https://...``, ``git@host:...``) as given."""
    if value is None or "://" in value or "@" in value.split("/")[0]:
        return value
    return os.path.abspath(value)


def _add_start_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model")
    parser.add_argument("--sandbox")
    parser.add_argument("--agent")
    parser.add_argument("--workspace")
    confirm = parser.add_mutually_exclusive_group()
    confirm.add_argument("--confirm", dest="confirm", action="store_const", const="risky")
    confirm.add_argument("--confirm-all", dest="confirm", action="store_const", const="always")
    confirm.add_argument("--no-confirm", dest="confirm", action="store_const", const="never")
    parser.add_argument("--title")
    parser.add_argument("--repository")
    parser.add_argument("--branch")
    parser.add_argument("--max-iterations", type=int, dest="max_iterations")
    parser.add_argument("--budget", type=float)
    parser.add_argument("--no-network", dest="network", action="store_false", default=None)
    parser.add_argument("--kernel", action="store_true")
    parser.add_argument("--no-view", dest="view", action="store_false")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="%convo", add_help=False, usage=USAGE.replace("%", "%%"))
    parser.add_argument("-h", "--help", action="store_true")
    commands = parser.add_subparsers(dest="command", parser_class=_Parser)
    start = commands.add_parser("start", prog="%convo start")
    start.add_argument("task")
    _add_start_flags(start)
    send = commands.add_parser("send", prog="%convo send")
    send.add_argument("words", nargs="+", metavar="[ID] message")
    send.add_argument("--no-view", dest="view", action="store_false")
    for name in ("stop", "status"):
        commands.add_parser(name, prog=f"%convo {name}").add_argument("id", nargs="?")
    for name in ("resume", "show"):
        sub = commands.add_parser(name, prog=f"%convo {name}")
        sub.add_argument("id", nargs="?")
        sub.add_argument("--no-view", dest="view", action="store_false")
    listing = commands.add_parser("list", prog="%convo list")
    listing.add_argument("--limit", type=int, default=20)
    listing.add_argument("--status")
    # The share commands take the CLI's arguments (share.arguments), the id optional here.
    add_export_arguments(commands.add_parser("export", prog="%convo export"), current=True)
    add_import_arguments(commands.add_parser("import", prog="%convo import"))
    replay = commands.add_parser("replay", prog="%convo replay")
    add_replay_arguments(replay)
    replay.add_argument("--no-view", dest="view", action="store_false")
    add_notebook_arguments(commands.add_parser("notebook", prog="%convo notebook"), current=True)
    commands.add_parser("help", prog="%convo help")
    return parser


def build_cell_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="%%convo", add_help=True, usage=USAGE.replace("%", "%%"))
    parser.add_argument("id", nargs="?")
    _add_start_flags(parser)
    return parser


def _split(line: str) -> list[str]:
    try:
        return shlex.split(line)
    except ValueError as exc:  # an unclosed quote
        raise UsageError(f"%convo: cannot parse the line ({exc})\n{USAGE}") from None


class ConversationList:
    """``%convo list``: a table in notebooks, aligned text elsewhere."""

    COLUMNS = ("id", "title", "status", "agent_state", "model", "cost", "updated_at")

    def __init__(self, items: Sequence[dict[str, Any]], current: str | None = None) -> None:
        self.items = list(items)
        self.current = current

    def _cell(self, item: dict[str, Any], column: str) -> str:
        value = item.get(column)
        if column == "cost":
            return f"${float(value or 0):.4f}"
        if column == "updated_at" and value:
            return str(value)[:19].replace("T", " ")
        return "" if value is None else str(value)

    def _repr_html_(self) -> str:
        if not self.items:
            return "<i>No conversations yet: start one with <code>%convo start</code>.</i>"
        head = "".join(f"<th>{c}</th>" for c in self.COLUMNS)
        rows = []
        for item in self.items:
            mark = " style='font-weight:bold'" if item.get("id") == self.current else ""
            cells = "".join(f"<td>{html.escape(self._cell(item, c))}</td>" for c in self.COLUMNS)
            rows.append(f"<tr{mark}>{cells}</tr>")
        return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"

    def __repr__(self) -> str:
        if not self.items:
            return "No conversations yet: start one with %convo start."
        table = [list(self.COLUMNS)] + [
            [self._cell(item, c)[:40] for c in self.COLUMNS] for item in self.items
        ]
        widths = [max(len(row[i]) for row in table) for i in range(len(self.COLUMNS))]
        return "\n".join(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
            for row in table
        )

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))


def _offered_sandboxes(capabilities: dict[str, Any]) -> str:
    """``process (default), docker (unavailable: ...)``: what ``GET capabilities`` offers."""
    return ", ".join(
        info["kind"]
        + (" (default)" if info["kind"] == capabilities["default_sandbox"] else "")
        + ("" if info["available"] else f" (unavailable: {info['reason']})")
        for info in capabilities["sandboxes"]
    )


@magics_class
class ConvoMagics(Magics):
    """The ``%convo`` line magic and ``%%convo`` cell magic."""

    server_url = Unicode(
        "",
        config=True,
        help="Base URL of the Jupyter server with jupyter-convo. '' = discover it "
        "(JUPYTER_CONVO_URL, then this user's running Jupyter servers).",
    )
    token = Unicode("", config=True, help="Token for server_url ('' = JUPYTER_CONVO_TOKEN).")
    default_model = Unicode(
        "", config=True, help="Model for new conversations when --model is not given."
    )
    default_sandbox = Unicode(
        "",
        config=True,
        help=(
            "Sandbox kind for new conversations when --sandbox is not given (one the server "
            "offers: %convo status). Default: '' (the server's)."
        ),
    )
    live_view = Bool(
        True,
        config=True,
        help="Show the live widget view (default True; False: a text/HTML transcript instead).",
    )
    kernel_confirmation = Bool(
        True,
        config=True,
        help=(
            "Confirmation mode by default with --kernel, whose Python runs unconfined in "
            "this kernel. Default: True."
        ),
    )
    max_rows = Int(200, config=True, help="Events the live view shows before folding (200).")
    start_timeout = Float(
        60.0, config=True, help="Seconds to wait for the server to accept a new conversation."
    )

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self._client: ConvoClient | None = None
        self.conversations: dict[str, Conversation] = {}
        self.current: Conversation | None = None

    # ------------------------------------------------------------------ plumbing

    @property
    def client(self) -> ConvoClient:
        """The client, created (and the server found) on first use."""
        if self._client is None:
            from ..client import ConvoClient, ServerInfo, discover_server

            candidates = None
            if self.server_url:
                url = self.server_url if self.server_url.endswith("/") else self.server_url + "/"
                token = self.token or os.environ.get("JUPYTER_CONVO_TOKEN", "")
                candidates = [ServerInfo(url=url, token=token)]
            # Checked once: a configured server without the extension is said as such.
            self._client = ConvoClient(discover_server(candidates=candidates))
        return self._client

    def close(self) -> None:
        for conversation in self.conversations.values():
            conversation.close()
        self.conversations.clear()
        self.current = None
        if self._client is not None:
            self._client.close()
            self._client = None

    def _conversation(self, conversation_id: str | None) -> Conversation:
        """A followed conversation by id, or the current one."""
        if conversation_id is None:
            if self.current is None:
                raise UsageError(
                    "%convo: no current conversation: give an ID, or start one with %convo start"
                )
            return self.current
        conversation = self.conversations.get(conversation_id)
        if conversation is None:
            from .conversation import Conversation

            conversation = Conversation.attach(self.client, conversation_id)
            self._prefer(conversation)
            self.conversations[conversation_id] = conversation
        return conversation

    def _prefer(self, conversation: Conversation) -> None:
        conversation.live_view = self.live_view
        conversation.max_rows = self.max_rows

    def _adopt(self, conversation: Conversation) -> Conversation:
        self._prefer(conversation)
        self.conversations[conversation.id] = conversation
        self.current = conversation
        return conversation

    def _show(self, conversation: Conversation, *, view: bool, after_id: int = -1) -> None:
        """Display the live view (or the static transcript) in this cell."""
        if view:
            conversation.show(after_id=after_id)

    def _run(self, action: Any, *args: Any) -> Any:
        """Run a subcommand; server problems print their message instead of a traceback."""
        from ..client import ConvoClientError, ServerNotFound
        from .conversation import ConversationError, KernelBusyError

        try:
            return action(*args)
        except _HelpShown:
            return None
        except ServerNotFound as exc:
            print(exc.message, file=sys.stderr)
        except ConvoClientError as exc:
            print(f"%convo: the server refused: {exc.message} (HTTP {exc.status})", file=sys.stderr)
        except (ConversationError, KernelBusyError, TimeoutError, ValueError) as exc:
            print(f"%convo: {exc}", file=sys.stderr)
        return None

    # ------------------------------------------------------------------ the magics

    @line_magic
    def convo(self, line: str) -> Any:
        """Run, watch and steer AI agent conversations (``%convo help`` for everything).

        %convo start "task" [--model M] [--sandbox KIND] [--agent NAME] [--workspace DIR]
                     [--confirm | --confirm-all | --no-confirm] [--title T] [--max-iterations N]
                     [--budget USD] [--kernel] [--no-view]
        %convo send [ID] "message" | stop [ID] | resume [ID] | show [ID] | list | status [ID]
        %%convo [ID]   (cell magic: the cell body is the message)

        ``conv = %convo start ...`` gives a Conversation with send(), wait(timeout),
        stop(), confirm(), reject(), events, to_dataframe(), last_message and metrics.
        ``--kernel`` runs the agent's Python in this kernel, unconfined (confirmation on by
        default). ``--no-network`` cuts the network of the agent's commands and Python.
        Without ID, commands act on the current conversation. See ``%convo help``.
        """
        try:
            args = build_parser().parse_args(_split(line))
        except _HelpShown:
            return None
        if args.help or args.command in (None, "help"):
            print(HELP)
            return None
        handler = getattr(self, f"_cmd_{args.command}")
        return self._run(handler, args)

    @_named_cell_magic("convo")
    def convo_cell(self, line: str, cell: str) -> Any:
        """The cell body is a message: to conversation ID, else a new conversation.

        %%convo [ID] [--model M] [--sandbox KIND] [--workspace DIR] [--confirm] ...
        (start flags apply to a new conversation only; see ``%convo help``)
        """
        try:
            args = build_cell_parser().parse_args(_split(line))
        except _HelpShown:
            return None
        text = cell.strip()
        if not text:
            raise UsageError(f"%%convo: the cell is empty: write the message in it\n{USAGE}")
        if args.id is None:
            args.task = text
            return self._run(self._cmd_start, args)
        flags = {k: v for k, v in vars(args).items() if k not in ("id", "view")}
        if any(v not in (None, False) for v in flags.values()):
            raise UsageError(
                "%%convo: start flags only apply to a new conversation (no ID)\n" + USAGE
            )
        return self._run(self._send, args.id, text, args.view)

    # ------------------------------------------------------------------ subcommands

    def _start_options(self, args: argparse.Namespace) -> tuple[dict[str, Any], bool]:
        options: dict[str, Any] = {"initial_message": args.task, "trigger": "notebook"}
        if not args.task.strip():
            raise UsageError(f"%convo start: the task is empty\n{USAGE}")
        model = args.model or self.default_model or None
        sandbox = args.sandbox or self.default_sandbox or None
        confirm = args.confirm
        if args.kernel:
            if args.sandbox not in (None, "process"):  # a configured default gives way
                raise UsageError(
                    "%convo start: --kernel needs the process sandbox (the agent connects to "
                    "this kernel on this machine)\n" + USAGE
                )
            options["kernel_connection_file"] = _kernel_connection_file()
            options["extra_instructions"] = KERNEL_MODE_INSTRUCTIONS
            sandbox = "process"  # the sandbox that shares this machine with the kernel
            if confirm is None:
                confirm = self.kernel_confirmation
        if sandbox is not None:
            from ..client import sandbox_problem

            problem = sandbox_problem(self.client.capabilities(), sandbox)
            if problem is not None:
                raise UsageError(f"%convo start: {problem}\n{USAGE}")
        if args.max_iterations is not None and args.max_iterations < 1:
            raise UsageError(f"%convo start: --max-iterations must be at least 1\n{USAGE}")
        if args.budget is not None and args.budget <= 0:
            raise UsageError(f"%convo start: --budget must be more than 0\n{USAGE}")
        values = {
            "model": model,
            "sandbox": sandbox,
            "agent": args.agent,
            "workspace": os.path.abspath(args.workspace) if args.workspace else None,
            "confirmation_mode": confirm,
            "title": args.title,
            "max_iterations": args.max_iterations,
            "max_budget_per_task": args.budget,
            "network": args.network,
            "repository": _repository_arg(args.repository),
            "branch": args.branch,
        }
        options.update({k: v for k, v in values.items() if v is not None})
        return options, bool(args.kernel)

    def _cmd_start(self, args: argparse.Namespace) -> Conversation:
        from .conversation import Conversation

        options, kernel_mode = self._start_options(args)
        conversation = Conversation.start(
            self.client, options, kernel_mode=kernel_mode, timeout=self.start_timeout
        )
        self._adopt(conversation)
        self._show(conversation, view=args.view)
        return conversation

    def _cmd_send(self, args: argparse.Namespace) -> None:
        words: list[str] = args.words
        if len(words) > 2:
            raise UsageError('%convo send: quote the message: %convo send [ID] "message"\n' + USAGE)
        conversation_id, text = (words[0], words[1]) if len(words) == 2 else (None, words[0])
        self._send(conversation_id, text, args.view)

    def _send(self, conversation_id: str | None, text: str, view: bool) -> None:
        conversation = self._conversation(conversation_id)
        after_id = conversation.last_event_id
        conversation.send(text)
        self.current = conversation
        if view:
            self._show(conversation, view=True, after_id=after_id)
        else:
            print(f"Sent to conversation {conversation.id}.")

    def _cmd_stop(self, args: argparse.Namespace) -> None:
        conversation = self._conversation(args.id)
        conversation.stop()
        print(f"Stopped conversation {conversation.id}.")

    def _cmd_resume(self, args: argparse.Namespace) -> Conversation:
        conversation = self._adopt(self._conversation(args.id))
        conversation.resume()
        self._show(conversation, view=args.view)
        return conversation

    def _cmd_show(self, args: argparse.Namespace) -> Conversation:
        conversation = self._adopt(self._conversation(args.id))
        self._show(conversation, view=args.view)
        return conversation

    def _cmd_list(self, args: argparse.Namespace) -> ConversationList:
        if not 1 <= args.limit <= 100:
            raise UsageError(f"%convo list: --limit must be between 1 and 100\n{USAGE}")
        filters: dict[str, Any] = {"limit": args.limit}
        if args.status:
            filters["status"] = args.status.upper()
        page = self.client.search(**filters)
        return ConversationList(page["items"], self.current.id if self.current else None)

    def _cmd_export(self, args: argparse.Namespace) -> None:
        from ..share.remote import export_to_file

        conversation_id = args.id or self._conversation(None).id
        written = export_to_file(
            self.client, conversation_id, args.output, workspace=args.workspace
        )
        print(f"Exported conversation {conversation_id} to {written}.")

    def _cmd_import(self, args: argparse.Namespace) -> dict[str, Any]:
        from ..share.remote import import_export

        meta = import_export(self.client, args.path)
        print(f"Imported {args.path} as conversation {meta['id']}.")
        return meta

    def _cmd_replay(self, args: argparse.Namespace) -> Conversation | dict[str, Any]:
        if args.local is not None:
            return _replay_locally(args.source, args.local, args.mode)
        from ..share.remote import replay_source_id
        from .conversation import Conversation

        source_id = replay_source_id(self.client, args.source)
        options = {
            "replay": {"source_conversation_id": source_id, "mode": args.mode},
            "trigger": "notebook",
        }
        conversation = Conversation.start(self.client, options, timeout=self.start_timeout)
        self._adopt(conversation)
        self._show(conversation, view=args.view)
        return conversation

    def _cmd_notebook(self, args: argparse.Namespace) -> None:
        from ..share.remote import local_export_or_id, notebook_from_export, notebook_to_file

        found = local_export_or_id(args.source) if args.source else self._conversation(None).id
        if isinstance(found, str):
            conversation_id, written = found, notebook_to_file(self.client, found, args.output)
        else:  # a local export: converted here, as the CLI does
            conversation_id, written = notebook_from_export(found, args.output)
        print(f"Wrote conversation {conversation_id} as the notebook {written}.")

    def _cmd_status(self, args: argparse.Namespace) -> None:
        lines = [f"Server: {self.client.server.url}"]
        if args.id is None and self.current is None:
            runtimes = self.client.runtimes()
            lines.append(f"Running agent loops: {len(runtimes)}")
            lines.append(f"Sandboxes: {_offered_sandboxes(self.client.capabilities())}")
            lines.append("No current conversation (start one with %convo start).")
            print("\n".join(lines))
            return
        conversation = self._conversation(args.id)
        metadata = self.client.get(conversation.id)
        metrics = conversation.metrics
        agent = conversation.agent_state or metadata.get("agent_state") or "-"
        lines += [
            f"Conversation: {conversation.id}"
            + (" (current)" if conversation is self.current else ""),
            f"Title: {metadata.get('title') or '-'}",
            f"Status: {metadata.get('status')}, agent: {agent}",
            f"Events: {len(conversation.events)}",
            f"Tokens: {metrics['total_tokens']:,} ({metrics['prompt_tokens']:,} in, "
            f"{metrics['completion_tokens']:,} out), cost ${metrics['cost']:.4f}, "
            f"{metrics['llm_calls']} LLM calls",
        ]
        if conversation.kernel_mode:
            lines.append("Python runs in this kernel (--kernel).")
        pending = conversation.pending_action
        if pending is not None:
            lines.append(
                f"Waiting for your confirmation: action {pending['id']} ({pending['kind']}); "
                "conv.confirm() or conv.reject()"
            )
        if conversation.error:
            lines.append(f"Error: {conversation.error}")
        print("\n".join(lines))


def _replay_locally(source: str, directory: str, mode: str) -> dict[str, Any]:
    """``replay --local``: the CLI's server-less replay, on a thread of its own (this
    kernel's event loop is busy running the cell). Returns the replay summary."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor
    from pathlib import Path

    from ..share.cli import replay_locally

    with ThreadPoolExecutor(1, thread_name_prefix="convo-replay") as pool:
        return pool.submit(asyncio.run, replay_locally(source, Path(directory), mode)).result()


def _kernel_connection_file() -> str:
    """This kernel's connection file, for the agent's python tool to connect to."""
    try:
        from ipykernel.connect import get_connection_file

        return os.path.abspath(get_connection_file())
    except (ImportError, RuntimeError):
        raise UsageError(
            "%convo start: --kernel needs a Jupyter kernel (this IPython has none)\n" + USAGE
        ) from None


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext jupyter_convo``: register the magics (again on reload)."""
    unload_ipython_extension(ipython)
    magics = ConvoMagics(shell=ipython)
    ipython.register_magics(magics)
    ipython.configurables.append(magics)  # so that %config ConvoMagics.x = y reaches it
    ipython._convo_magics = magics


def unload_ipython_extension(ipython: Any) -> None:
    magics = getattr(ipython, "_convo_magics", None)
    if isinstance(magics, ConvoMagics):
        magics.close()
        if magics in ipython.configurables:
            ipython.configurables.remove(magics)
        del ipython._convo_magics
