"""``jupyter convo agents``: the backends, and which external agents are found where."""

from __future__ import annotations

from pathlib import Path

import pytest

from jupyter_convo.cli import main


def test_agents_lists_backends_and_says_how_to_install_the_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = tmp_path / "bin" / "qwen"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("JUPYTER_CONVO_AGENTS_PATH", str(fake.parent))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert main(["agents"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "yes (built in)" in lines["builtin"]
    assert f"yes ({fake})" in lines["qwen"]
    assert "no: npm install --prefix /opt/convo-agents opencode-ai" in lines["opencode"]
