"""The user docs keep up with the code: every command documented, one set of share flags."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from jupyter_convo.cli import build_parser as build_cli_parser
from jupyter_convo.kernel.magics import HELP
from jupyter_convo.kernel.magics import build_parser as build_magic_parser

REPO = Path(__file__).resolve().parents[2]
SHARE_COMMANDS = ("export", "import", "replay", "notebook")
# How each front end shows progress: the only flags that may differ.
FRONT_END_FLAGS = {"--follow", "--no-view"}


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("no sub-commands")


def test_every_convo_subcommand_is_documented_in_the_notebook_guide() -> None:
    guide = (REPO / "docs" / "notebook.md").read_text()
    commands = sorted(subcommands(build_magic_parser()))
    assert len(commands) >= 12
    undocumented = [name for name in commands if f"`%convo {name}" not in guide]
    assert undocumented == [], f"docs/notebook.md does not document %convo {undocumented}"
    missing_help = [name for name in commands if not re.search(rf"^{name}\b", HELP, re.M)]
    assert missing_help == [], f"%convo help does not explain {missing_help}"


def test_every_cli_command_is_in_the_readme() -> None:
    readme = (REPO / "README.md").read_text()
    missing = [
        name for name in subcommands(build_cli_parser()) if f"jupyter convo {name}" not in readme
    ]
    assert missing == [], f"README.md does not show jupyter convo {missing}"


def arguments(parser: argparse.ArgumentParser) -> dict[str, tuple[object, ...]]:
    """Each argument's name and meaning (help texts aside)."""
    found: dict[str, tuple[object, ...]] = {}
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if FRONT_END_FLAGS.intersection(action.option_strings):
            continue
        name = "/".join(sorted(action.option_strings)) or action.dest
        found[name] = (action.dest, type(action).__name__, action.choices, action.default)
    return found


@pytest.mark.parametrize("command", SHARE_COMMANDS)
def test_the_magics_and_the_cli_take_the_same_share_arguments(command: str) -> None:
    cli = subcommands(build_cli_parser())[command]
    magic = subcommands(build_magic_parser())[command]
    assert arguments(magic) == arguments(cli)


def test_the_docs_speak_to_users_not_to_the_team() -> None:
    for path in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        text = path.read_text()
        assert "../shared" not in text and "/work/" not in text, path.name
    assert "docs/architecture.md" in (REPO / "README.md").read_text()
