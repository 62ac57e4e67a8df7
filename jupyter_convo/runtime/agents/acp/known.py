"""Backends for the known ACP agents (``registry.KNOWN_AGENTS``), each with its config.

Each writes its config into the conversation's private HOME, pointing it at the LLM
gateway with the conversation's gateway token, and turns off telemetry and self-update.
Facts tried on this machine: ``/work/shared/notes/ACP_AGENTS.md``.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..registry import KNOWN_AGENTS, AgentNotInstalled, KnownAgent
from .backend import AcpAgent, Launch, LLMAccess


class KnownAcpAgent(AcpAgent):
    known: KnownAgent

    def program(self) -> str:
        path = self.known.find()
        if path is None:
            raise AgentNotInstalled(self.known)
        return path


class OpenCodeAgent(KnownAcpAgent):
    name = "opencode"
    description = "OpenCode (opencode-ai) over ACP"
    known = KNOWN_AGENTS["opencode"]

    def launch(self, home: Path, llm: LLMAccess) -> Launch:
        ask = "ask" if self.context.settings.confirmation_mode else "allow"
        model = f"convo/{llm.model}"
        config = {
            "model": model,
            "small_model": model,
            "autoupdate": False,
            "share": "disabled",
            "permission": {"edit": ask, "bash": ask},
            "provider": {
                "convo": {
                    "npm": "@ai-sdk/openai-compatible",
                    "name": "jupyter-convo gateway",
                    "options": {"baseURL": llm.base_url, "apiKey": llm.api_key},
                    "models": {llm.model: {"name": llm.model, "tool_call": True}},
                }
            },
        }
        return Launch(
            argv=[self.program(), *self.known.args],
            env={
                "OPENCODE_DISABLE_AUTOUPDATE": "1",
                "OPENCODE_DISABLE_MODELS_FETCH": "1",
                "OPENCODE_DISABLE_LSP_DOWNLOAD": "1",
                "OPENCODE_DISABLE_SHARE": "1",
            },
            files={".config/opencode/opencode.json": json.dumps(config, indent=2)},
        )


class QwenCodeAgent(KnownAcpAgent):
    name = "qwen"
    description = "Qwen Code (@qwen-code/qwen-code) over ACP"
    known = KNOWN_AGENTS["qwen"]

    def launch(self, home: Path, llm: LLMAccess) -> Launch:
        settings = {
            "security": {"auth": {"selectedType": "openai"}},
            "model": {"name": llm.model},
            "privacy": {"usageStatisticsEnabled": False},
            "telemetry": {"enabled": False},
            "general": {"disableAutoUpdate": True, "disableUpdateNag": True},
            "memory": {"enableManagedAutoMemory": False, "enableManagedAutoDream": False},
            "ui": {"enableFollowupSuggestions": False},
            # Ask us (the client) before edits and commands; confirmation mode decides.
            "tools": {"approvalMode": "default"},
        }
        return Launch(
            argv=[self.program(), *self.known.args],
            env={
                "OPENAI_API_KEY": llm.api_key,
                "OPENAI_BASE_URL": llm.base_url,
                "OPENAI_MODEL": llm.model,
            },
            files={".qwen/settings.json": json.dumps(settings, indent=2)},
        )
