"""``jupyter convo export|import|replay|notebook``: share and reproduce from a terminal.

``export`` and ``import`` go through the server. ``replay`` and ``notebook`` do too when
given a conversation id; given a local export (zip or folder) they can also work without a
server: ``replay SOURCE --local DIR`` replays into the folder DIR with the real tools (no
LLM needed), ``notebook SOURCE`` converts the export directly.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .arguments import (
    add_export_arguments,
    add_import_arguments,
    add_notebook_arguments,
    add_replay_arguments,
)

MAX_DIFF_LINES = 40


def _share_error() -> type[Exception]:
    """The importer's error class, loaded only when a command runs."""
    from .importer import ShareFormatError

    return ShareFormatError


def step_line(event: dict[str, Any]) -> str:
    """One line per replayed step (plus its diff, clipped, when it diverged)."""
    kind = event.get("kind")
    if kind == "replay_summary":
        return f"replay ({event.get('mode')}): {event.get('message', '')}"
    line = (
        f"step {event.get('step')}: {event.get('verdict')} "
        f"(recorded event {event.get('recorded_event_id')})"
    )
    diff = str(event.get("diff") or "")
    if diff:
        lines = diff.splitlines()
        if len(lines) > MAX_DIFF_LINES:
            lines = [*lines[:MAX_DIFF_LINES], f"... ({len(lines) - MAX_DIFF_LINES} more lines)"]
        line += "\n" + "\n".join("    " + text for text in lines)
    return line


def _with_server(run: Callable[[Any, argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run ``run(client, args)`` against the server, reporting server problems in one line."""
    from ..client import ConvoClient, ConvoClientError, ServerNotFound

    try:
        with ConvoClient() as client:
            return run(client, args)
    except ServerNotFound as exc:
        print(f"jupyter convo: {exc.message}", file=sys.stderr)
        return 2
    except ConvoClientError as exc:
        print(f"jupyter convo: the server answered {exc.status}: {exc.message}", file=sys.stderr)
        return 1


# --- export and import ------------------------------------------------------------------------


def cmd_export(client: Any, args: argparse.Namespace) -> int:
    from .remote import export_to_file

    path = export_to_file(client, args.id, args.output, workspace=args.workspace)
    print(f"exported {args.id} to {path}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    if not Path(args.path).expanduser().exists():  # said before looking for a server
        print(f"jupyter convo: {args.path} does not exist", file=sys.stderr)
        return 1
    return _with_server(_import_on_server, args)


def _import_on_server(client: Any, args: argparse.Namespace) -> int:
    from .remote import import_export

    try:
        meta = import_export(client, args.path)
    except _share_error() as exc:
        print(f"jupyter convo: {exc}", file=sys.stderr)
        return 1
    print(f"imported {args.path} as conversation {meta['id']}: {meta.get('title') or ''}".rstrip())
    return 0


# --- replay ------------------------------------------------------------------------------------


def cmd_replay(args: argparse.Namespace) -> int:
    if args.local is not None:
        try:
            summary = asyncio.run(replay_locally(args.source, Path(args.local), args.mode))
        except _share_error() as exc:
            print(f"jupyter convo: {exc}", file=sys.stderr)
            return 1
        return 0 if summary["diverged"] == 0 else 3
    from .remote import local_export_or_id

    try:
        local_export_or_id(args.source)  # a missing file is said before looking for a server
    except _share_error() as exc:
        print(f"jupyter convo: {exc}", file=sys.stderr)
        return 1
    return _with_server(_replay_on_server, args)


def _replay_on_server(client: Any, args: argparse.Namespace) -> int:
    from .remote import start_replay

    try:
        task = start_replay(client, args.source, mode=args.mode)
    except _share_error() as exc:
        print(f"jupyter convo: {exc}", file=sys.stderr)
        return 1
    conversation_id = task["conversation_id"]
    print(f"replaying into conversation {conversation_id}", flush=True)
    if not args.follow:
        return 0
    for event in client.events(conversation_id):
        if event.get("kind") in ("replay_step", "replay_summary"):
            print(step_line(event), flush=True)
        if event.get("kind") == "replay_summary":
            return 0 if event.get("diverged") == 0 else 3
        if event.get("kind") == "error" and str(event.get("code", "")).startswith("RUNTIME"):
            print(f"jupyter convo: {event.get('message', '')}", file=sys.stderr)
            return 1
    return 1


async def replay_locally(source_path: str, directory: Path, mode: str) -> dict[str, Any]:
    """Replay an export into ``directory`` (events, cassette, workspace) without a server.

    A recorded run is someone's commands: they run in the jail the process sandbox uses
    (``agent.confine``, default policy) where bubblewrap works, else with a warning.
    """
    from jupyter_core.paths import jupyter_data_dir, jupyter_runtime_dir

    from ..agent.cassette import Cassette
    from ..agent.confine import Confiner, default_spec
    from ..agent.llm import LLMClient
    from ..agent.settings import AgentSettings
    from ..agent.tools import build_tools
    from ..agent.workspace import Workspace
    from ..events.log import EventLog
    from ..events.redact import SecretRegistry
    from ..events.schema import Event, event_to_dict
    from .format import CASSETTE_FILE, EVENTS_FILE
    from .replay import run_replay
    from .source import load_source

    source = load_source(source_path)
    if (directory / EVENTS_FILE).exists():
        raise _share_error()(f"{directory} already holds a conversation; pick a new folder")
    secrets = SecretRegistry()
    secrets.add_from_environ()
    settings = AgentSettings()
    workspace = Workspace(directory / "workspace")
    log = EventLog(directory / EVENTS_FILE, secrets=secrets)
    cassette = Cassette(directory / CASSETTE_FILE, secrets=secrets)
    llm = LLMClient(settings.llm, cassette=cassette, secrets=secrets)
    confiner = Confiner(
        default_spec([jupyter_data_dir(), jupyter_runtime_dir()]),
        workspace=workspace.root,
        directory=directory,
    )
    if not confiner.confined:
        print(f"jupyter convo: warning: {confiner.message()}", file=sys.stderr, flush=True)
    log.append(confiner.event())
    tools = build_tools(workspace, settings, confiner)

    def show(event: Event) -> None:
        if event.kind in ("replay_step", "replay_summary"):
            print(step_line(event_to_dict(event)), flush=True)

    unsubscribe = log.subscribe(show)
    outcome = None
    try:
        outcome = await run_replay(
            source,
            mode,  # type: ignore[arg-type]
            log=log,
            tools=tools,
            settings=settings,
            workspace=workspace,
            llm=llm,
            cassette=cassette,
            secrets=secrets,
        )
        return event_to_dict(outcome.summary)
    finally:
        unsubscribe()
        if outcome is not None:
            await outcome.controller.close()
        else:
            for tool in tools:
                await tool.close()
        await llm.close()
        cassette.close()
        log.close()
        print(f"the replayed conversation is in {directory}")


# --- notebook ------------------------------------------------------------------------------------


def cmd_notebook(args: argparse.Namespace) -> int:
    from .remote import local_export_or_id, notebook_from_export

    try:
        found = local_export_or_id(args.source)
        if isinstance(found, Path):
            _, path = notebook_from_export(found, args.output)
            print(f"wrote {path}")
            return 0
    except _share_error() as exc:
        print(f"jupyter convo: {exc}", file=sys.stderr)
        return 1
    return _with_server(_notebook_on_server, args)


def _notebook_on_server(client: Any, args: argparse.Namespace) -> int:
    from .remote import notebook_to_file

    path = notebook_to_file(client, args.source, args.output)
    print(f"wrote {path}")
    return 0


def add_share_commands(sub: Any) -> None:
    """Add ``export``, ``import``, ``replay`` and ``notebook`` to the CLI's subparsers
    (their arguments are ``share.arguments``', shared with the ``%convo`` magics)."""
    p = sub.add_parser("export", help="download a conversation as an export zip")
    add_export_arguments(p)
    p.set_defaults(run=cmd_export)

    p = sub.add_parser("import", help="import an export (zip or unpacked folder)")
    add_import_arguments(p)
    p.set_defaults(run_local=cmd_import)

    p = sub.add_parser(
        "replay", help="replay a conversation or an export step by step, then go on live"
    )
    add_replay_arguments(p)
    p.add_argument("--follow", "-f", action="store_true", help="print each step's verdict")
    p.set_defaults(run_local=cmd_replay)

    p = sub.add_parser("notebook", help="a conversation or an export as a notebook (.ipynb)")
    add_notebook_arguments(p)
    p.set_defaults(run_local=cmd_notebook)


__all__ = ["add_share_commands", "replay_locally", "step_line"]
