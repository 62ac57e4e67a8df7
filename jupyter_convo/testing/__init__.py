"""A scripted OpenAI-compatible LLM server: the test double at the LLM boundary.

Usable from pytest (``pytest_plugins = ["jupyter_convo.testing.pytest_plugin"]`` gives the
``scripted_llm`` and ``scripted_llm_config`` fixtures), from a notebook, or as a separate
process (``python -m jupyter_convo.testing --script FILE``)::

    from jupyter_convo.testing import ScriptedLLM, reply, tool_call
    llm = ScriptedLLM()
    llm.add_script([tool_call("terminal", {"command": "ls"}), reply("done")])
    with llm.serve() as server:
        ...  # point an OpenAI client at server.base_url
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .script import (
    Script,
    ScriptedError,
    ScriptedResponse,
    ScriptedToolCall,
    ScriptFile,
    call,
    context_length_error,
    error,
    load_script_file,
    reply,
    tool_call,
    tool_calls,
)
from .server import DEFAULT_MODEL, ScriptedLLM, ScriptedServer

if TYPE_CHECKING:
    from ..agent.settings import LLMConfig

TEST_API_KEY = "test-key-not-secret"

__all__ = [
    "DEFAULT_MODEL",
    "TEST_API_KEY",
    "Script",
    "ScriptFile",
    "ScriptedError",
    "ScriptedLLM",
    "ScriptedResponse",
    "ScriptedServer",
    "ScriptedToolCall",
    "call",
    "context_length_error",
    "error",
    "llm_config_for",
    "load_script_file",
    "reply",
    "tool_call",
    "tool_calls",
]


def llm_config_for(llm: ScriptedLLM, **overrides: Any) -> LLMConfig:
    """An ``LLMConfig`` pointing at a started ``ScriptedLLM``, with fast retries."""
    from ..agent.settings import LLMConfig

    values: dict[str, Any] = {
        "model": llm.models[0],
        "base_url": llm.base_url,
        "api_key": llm.require_api_key or TEST_API_KEY,
        "timeout": 10.0,
        "max_retries": 2,
        "retry_base_delay": 0.01,
    }
    values.update(overrides)
    return LLMConfig.model_validate(values)
