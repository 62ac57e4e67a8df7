"""Pytest fixtures for the scripted LLM; opt in with
``pytest_plugins = ["jupyter_convo.testing.pytest_plugin"]`` in a conftest.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ..agent.settings import LLMConfig
from . import ScriptedLLM, llm_config_for


@pytest.fixture
def scripted_llm() -> Iterator[ScriptedLLM]:
    """A started ``ScriptedLLM`` with no scripts yet; stopped after the test."""
    llm = ScriptedLLM()
    with llm.serve():
        yield llm


@pytest.fixture
def scripted_llm_config(scripted_llm: ScriptedLLM) -> LLMConfig:
    """An ``LLMConfig`` for ``scripted_llm`` (test key, 2 retries, 10 ms base delay).

    For other values use ``jupyter_convo.testing.llm_config_for(scripted_llm, **overrides)``.
    """
    return llm_config_for(scripted_llm)
