"""Workspace skills (AGENTS.md, .convo/skills/*.md) and the remember prompt's parsing."""

from __future__ import annotations

from pathlib import Path

from jupyter_convo.server.remember import extract_prompt
from jupyter_convo.server.skills import find_skills, split_front_matter


def test_front_matter_flow_and_block_lists() -> None:
    meta, body = split_front_matter("---\ntriggers: [a, 'b c']\nname: x\n---\nbody\n")
    assert meta == {"triggers": ["a", "b c"], "name": "x"} and body == "body\n"
    meta, body = split_front_matter('---\ntriggers:\n  - one\n  - "two"\n---\n\ntext')
    assert meta == {"triggers": ["one", "two"]} and body == "text"
    assert split_front_matter("no front matter\n") == ({}, "no front matter\n")
    assert split_front_matter("---\nunclosed: [x]\n") == ({}, "---\nunclosed: [x]\n")


def test_find_skills(tmp_path: Path) -> None:
    (tmp_path / "AGENTS.md").write_text("Always use uv.\n")
    skills_dir = tmp_path / ".convo" / "skills"
    skills_dir.mkdir(parents=True)
    (skills_dir / "plots.md").write_text("---\ntriggers: [plot, chart]\n---\nUse matplotlib.\n")
    (skills_dir / "style.md").write_text("Short answers.\n")
    (skills_dir / "notes.txt").write_text("not a skill")
    (skills_dir / "broken.md").write_bytes(b"\xff\xfe\x00bad")
    outside = tmp_path.parent / "outside.md"
    outside.write_text("---\ntriggers: [leak]\n---\nsecret\n")
    (skills_dir / "link.md").symlink_to(outside)

    found = find_skills(tmp_path)
    assert [(s.name, s.type, s.triggers, s.path) for s in found] == [
        ("AGENTS", "repo", [], "AGENTS.md"),
        ("plots", "knowledge", ["plot", "chart"], ".convo/skills/plots.md"),
        ("style", "repo", [], ".convo/skills/style.md"),
    ]
    assert found[1].content == "Use matplotlib.\n"
    assert find_skills(tmp_path / "missing") == []


def test_extract_prompt() -> None:
    assert extract_prompt("x <update_prompt>\n Do it.\n</update_prompt> y") == "Do it."
    assert extract_prompt("  plain answer \n") == "plain answer"
    assert extract_prompt("<update_prompt></update_prompt>") == ""
