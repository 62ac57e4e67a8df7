"""The arguments of ``export``, ``import``, ``replay`` and ``notebook``, defined once.

``jupyter convo ...`` (``share.cli``) and ``%convo ...`` (``kernel.magics``) both build
their sub-commands with these functions, so a flag means the same thing in a terminal and
in a notebook. The only difference: the magics know a current conversation, so there the
conversation id may be left out (``current=True``). Each front end then adds how it shows
progress (``--follow`` in the terminal, ``--no-view`` in a notebook).

Only ``argparse`` here: building the parsers must not import anything heavy.
"""

from __future__ import annotations

import argparse

REPLAY_MODES = ("actions", "cassette")  # as share.remote; kept here so --help loads nothing


def _id_help(what: str, current: bool) -> str:
    return what + (" (default: the current conversation)" if current else "")


def add_export_arguments(parser: argparse.ArgumentParser, *, current: bool = False) -> None:
    """``export ID [--output PATH] [--workspace]``."""
    parser.add_argument(
        "id", nargs="?" if current else None, help=_id_help("the conversation", current)
    )
    parser.add_argument(
        "--output", "-o", metavar="PATH", help="the zip to write (default: <id>.convo.zip)"
    )
    parser.add_argument(
        "--workspace", action="store_true", help="include the workspace's files in the zip"
    )


def add_import_arguments(parser: argparse.ArgumentParser) -> None:
    """``import PATH``."""
    parser.add_argument("path", help="an export zip or an unpacked export folder")


def add_replay_arguments(parser: argparse.ArgumentParser) -> None:
    """``replay SOURCE [--mode actions|cassette] [--local DIR]``."""
    parser.add_argument(
        "source", help="a conversation id, an export zip or an unpacked export folder"
    )
    parser.add_argument(
        "--mode",
        choices=REPLAY_MODES,
        default="actions",
        help="actions: re-run the recorded actions, no LLM (default); cassette: the agent "
        "runs again, its LLM answers served from the recording",
    )
    parser.add_argument(
        "--local",
        metavar="DIR",
        help="replay here without a server, into the new folder DIR (SOURCE is an export)",
    )


def add_notebook_arguments(parser: argparse.ArgumentParser, *, current: bool = False) -> None:
    """``notebook SOURCE [--output PATH]``."""
    parser.add_argument(
        "source",
        nargs="?" if current else None,
        help=_id_help(
            "a conversation id, or an export zip / folder (converted here, no server)", current
        ),
    )
    parser.add_argument(
        "--output", "-o", metavar="PATH", help="the notebook to write (default: <id>.ipynb)"
    )


__all__ = [
    "REPLAY_MODES",
    "add_export_arguments",
    "add_import_arguments",
    "add_notebook_arguments",
    "add_replay_arguments",
]
