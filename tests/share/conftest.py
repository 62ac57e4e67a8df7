"""Fixtures of the share tests: the committed example run (a folder, a zip) and replay
targets that are closed after the test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from share_helpers import EXAMPLE, ReplayTarget, zip_directory

from jupyter_convo.agent.settings import AgentSettings
from jupyter_convo.share.format import MANIFEST_FILE
from jupyter_convo.testing import ScriptedLLM, llm_config_for


@pytest.fixture
def example_dir() -> Path:
    assert (EXAMPLE / MANIFEST_FILE).is_file(), f"the example run is missing at {EXAMPLE}"
    return EXAMPLE


@pytest.fixture
def example_zip(example_dir: Path) -> bytes:
    return zip_directory(example_dir)


@pytest.fixture
async def make_target(
    tmp_path: Path, scripted_llm: ScriptedLLM
) -> AsyncIterator[Callable[[str], ReplayTarget]]:
    targets: list[ReplayTarget] = []

    def make(name: str) -> ReplayTarget:
        settings = AgentSettings(llm=llm_config_for(scripted_llm))
        target = ReplayTarget(tmp_path / "conversations" / name, settings)
        targets.append(target)
        return target

    yield make
    for target in targets:
        await target.close()
