"""Skills found in a conversation's workspace: instructions the agent may be given.

Two places, both plain Markdown a user can edit in the Jupyter file browser:

- ``AGENTS.md`` at the workspace root: always-on instructions (type ``repo``);
- ``.convo/skills/*.md``: one skill per file, named by the file stem. Optional front matter
  ``triggers: [word, ...]`` makes it a ``knowledge`` skill, given only when a trigger word
  appears; without triggers it is always on (``repo``).

Front matter is the block between a first line ``---`` and the next ``---``; only the
``triggers`` (a flow list, or a block list of ``- word`` lines) and ``name`` keys are read.
Files that cannot be read as UTF-8, or that ``Workspace.open_confined`` refuses (links
leading out, hard links, FIFOs, devices), are skipped with a warning, never fatal.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from ..agent.workspace import Workspace, WorkspaceError

log = logging.getLogger(__name__)

AGENTS_FILE = "AGENTS.md"
SKILLS_DIR = Path(".convo") / "skills"
MAX_SKILL_BYTES = 256 * 1024


class Skill(BaseModel):
    name: str
    type: Literal["repo", "knowledge"]
    path: str  # relative to the workspace, with "/"
    content: str
    triggers: list[str]


def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


def split_front_matter(text: str) -> tuple[dict[str, str | list[str]], str]:
    """The front matter keys we understand, and the body after it."""
    lines = text.splitlines()
    if not lines or lines[0].strip() != "---":
        return {}, text
    try:
        end = next(i for i in range(1, len(lines)) if lines[i].strip() == "---")
    except StopIteration:
        return {}, text
    meta: dict[str, str | list[str]] = {}
    key: str | None = None
    for line in lines[1:end]:
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("- ") and key is not None:
            current = meta.get(key)
            items = current if isinstance(current, list) else []
            items.append(_unquote(stripped[2:]))
            meta[key] = items
            continue
        name, sep, value = stripped.partition(":")
        if not sep:
            continue
        key = name.strip()
        value = value.strip()
        if value.startswith("[") and value.endswith("]"):
            meta[key] = [_unquote(v) for v in value[1:-1].split(",") if v.strip()]
        elif value:
            meta[key] = _unquote(value)
        else:
            meta[key] = []
    body = "".join(text.splitlines(keepends=True)[end + 1 :]).lstrip("\n")
    return meta, body


def _read(workspace: Workspace, path: Path) -> str | None:
    """The file's text if it may be served (``Workspace.open_confined``: inside, not a
    hard link, FIFO or device) and fits; else None, with a warning."""
    try:
        with workspace.open_confined(path) as handle:
            data = handle.read(MAX_SKILL_BYTES + 1)
        if len(data) > MAX_SKILL_BYTES:
            log.warning("Skipping skill %s: larger than %s bytes", path, MAX_SKILL_BYTES)
            return None
        return data.decode("utf-8")
    except (OSError, UnicodeDecodeError, WorkspaceError) as exc:
        log.warning("Skipping skill %s: %s", path, exc)
        return None


def _skill(workspace: Workspace, path: Path, default_name: str) -> Skill | None:
    root = workspace.root
    text = _read(workspace, path)
    if text is None:
        return None
    meta, body = split_front_matter(text)
    raw_triggers = meta.get("triggers", [])
    triggers = [raw_triggers] if isinstance(raw_triggers, str) else list(raw_triggers)
    triggers = [t for t in triggers if t]
    name = meta.get("name")
    return Skill(
        name=name if isinstance(name, str) and name else default_name,
        type="knowledge" if triggers else "repo",
        path=path.relative_to(root).as_posix(),
        content=body,
        triggers=triggers,
    )


def find_skills(workspace: Path) -> list[Skill]:
    """Every skill of ``workspace``: AGENTS.md first, then skills by file name."""
    if not workspace.is_dir():
        return []
    confined = Workspace(workspace)
    root = confined.root
    skills: list[Skill] = []
    agents = root / AGENTS_FILE
    if agents.is_file():
        skill = _skill(confined, agents, "AGENTS")
        if skill is not None:
            skills.append(skill)
    folder = root / SKILLS_DIR
    if folder.is_dir():
        for path in sorted(folder.glob("*.md")):
            if path.is_file():
                skill = _skill(confined, path, path.stem)
                if skill is not None:
                    skills.append(skill)
    return skills
