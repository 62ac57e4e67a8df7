"""The agent's system prompt: our own text in ``system.md``, filled in per conversation.

The text lives in a Markdown file shipped inside the package so it can be read and edited as
prose; this module only loads it and appends what the user and skills add.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from string import Template

SYSTEM_PROMPT_FILE = "system.md"


@cache
def _template(name: str) -> Template:
    text = resources.files(__name__).joinpath(name).read_text(encoding="utf-8")
    return Template(text)


def system_prompt(*, workspace: str, extra_instructions: str = "", instructions: str = "") -> str:
    """The system prompt for an agent working in ``workspace``.

    ``extra_instructions`` come from the user's settings; ``instructions`` are further text
    such as skills. Both are appended under their own headings when not empty.
    """
    text = _template(SYSTEM_PROMPT_FILE).safe_substitute(workspace=workspace).rstrip()
    sections = [text]
    if instructions.strip():
        sections.append("## Additional instructions\n\n" + instructions.strip())
    if extra_instructions.strip():
        sections.append("## Instructions from the user\n\n" + extra_instructions.strip())
    return "\n\n".join(sections) + "\n"
