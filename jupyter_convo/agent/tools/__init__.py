"""The agent's tools: what the LLM may call, and how each call is carried out."""

from __future__ import annotations

from ..confine import Confiner
from ..settings import AgentSettings
from ..workspace import Workspace
from .base import Tool, ToolArgumentError
from .file_editor import FileEditorTool
from .python import PythonTool
from .simple import FinishTool, ThinkTool
from .terminal import TerminalTool

__all__ = [
    "FileEditorTool",
    "FinishTool",
    "PythonTool",
    "TerminalTool",
    "ThinkTool",
    "Tool",
    "ToolArgumentError",
    "build_tools",
]


def build_tools(
    workspace: Workspace, settings: AgentSettings, confiner: Confiner | None = None
) -> list[Tool]:
    """One of each tool, bound to ``workspace``. Processes (shell, kernel) start on first
    use, in ``confiner``'s jail when given; ``Tool.close`` ends them.
    """
    return [
        TerminalTool(workspace, settings, confiner),
        PythonTool(workspace, settings, confiner),
        FileEditorTool(workspace, settings),
        ThinkTool(),
        FinishTool(),
    ]
