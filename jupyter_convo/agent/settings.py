"""Agent settings: everything a runtime needs to run one conversation's agent loop.

Resolved by the server (per-conversation options > user settings > server config >
environment) and sent to the runtime in ``POST /api/conversations``. The API key is a
``SecretStr`` so it never prints; the runtime registers it with the redactor.
"""

from __future__ import annotations

import re
from functools import cached_property
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    SerializationInfo,
    field_serializer,
    field_validator,
)

from .repository import RepositorySpec

# Pass this as ``model_dump(context=...)`` only when sending settings to a runtime over its
# authenticated loopback API: secrets are then written in clear instead of masked.
REVEAL_SECRETS = {"reveal_secrets": True}


def _reveals(info: SerializationInfo) -> bool:
    return bool(isinstance(info.context, dict) and info.context.get("reveal_secrets"))


class LLMConfig(BaseModel):
    """How to reach an OpenAI-compatible Chat Completions endpoint."""

    model_config = ConfigDict(extra="forbid")

    model: str = "gpt-4o-mini"
    base_url: str | None = None
    api_key: SecretStr | None = None
    temperature: float | None = 0.0
    max_output_tokens: int | None = None
    timeout: float = Field(default=120.0, gt=0)
    max_retries: int = Field(default=4, ge=0)
    retry_base_delay: float = Field(default=1.0, ge=0)
    stream: bool = True
    # The model's context window in tokens; None: known models' (agent/condense.py), else
    # the history is condensed only when the endpoint says the request is too long.
    context_window: int | None = Field(default=None, ge=1_000)
    # USD per token; 0 when unknown (cost then stays 0 and is reported as such).
    input_cost_per_token: float = Field(default=0.0, ge=0)
    output_cost_per_token: float = Field(default=0.0, ge=0)

    @field_serializer("api_key", when_used="json")
    def _api_key(self, value: SecretStr | None, info: SerializationInfo) -> str | None:
        if value is None:
            return None
        return value.get_secret_value() if _reveals(info) else str(value)


ActionKind = Literal["command", "python", "file_edit", "file_read"]
RuleRisk = Literal["low", "medium", "high"]
_CODE_KINDS: tuple[ActionKind, ...] = ("command", "python")
# When actions wait for the user: never, when their risk is high or unknown, or always.
ConfirmationPolicy = Literal["never", "risky", "always"]


class SecurityRule(BaseModel):
    """One rule: actions of ``kinds`` whose text matches ``pattern`` have ``risk``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=80)
    pattern: str = Field(min_length=1, description="a Python regular expression (searched)")
    risk: RuleRisk
    reason: str = Field(min_length=1, max_length=200)
    kinds: list[ActionKind] = Field(default_factory=lambda: list(_CODE_KINDS))
    ignore_case: bool = True

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        return value

    @cached_property
    def regex(self) -> re.Pattern[str]:
        return re.compile(self.pattern, re.IGNORECASE if self.ignore_case else 0)


class SecuritySettings(BaseModel):
    """The security analyzer (agent/security.py) that scores every action's risk."""

    model_config = ConfigDict(extra="forbid")

    # rules: the built-in and your rules; llm: also ask a model (it can only raise a risk);
    # none: keep the risk the agent's LLM claims.
    analyzer: Literal["rules", "llm", "none"] = "rules"
    rules: list[SecurityRule] = Field(default_factory=list)
    default_rules: bool = True
    # The model the LLM analyzer asks at the agent's endpoint (default: the agent's model).
    llm_model: str | None = Field(default=None, min_length=1)


class CondensationSettings(BaseModel):
    """When and how the history is condensed (agent/condense.py)."""

    model_config = ConfigDict(extra="forbid")

    # False: only on a context-length error (never by the window estimate).
    enabled: bool = True
    # Condense when the estimated request exceeds this share of the context window.
    threshold: float = Field(default=0.75, gt=0, le=1)
    # LLM turns kept verbatim after the summary.
    keep_turns: int = Field(default=4, ge=1)


class AgentSettings(BaseModel):
    """Limits and behaviour of one agent loop."""

    model_config = ConfigDict(extra="forbid")

    llm: LLMConfig = Field(default_factory=LLMConfig)
    max_iterations: int = Field(default=100, ge=1)
    max_budget_per_task: float | None = Field(default=None, gt=0)
    # True and False are read as "risky" and "never" (the boolean form came first).
    confirmation_mode: ConfirmationPolicy = "never"
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    condensation: CondensationSettings = Field(default_factory=CondensationSettings)
    # Clone this repository into the (empty) workspace before the agent starts.
    repository: RepositorySpec | None = None
    stuck_detection: bool = True
    command_timeout: float = Field(default=120.0, gt=0)
    python_timeout: float = Field(default=300.0, gt=0)
    max_output_chars: int = Field(default=30_000, ge=1_000)
    # Extra secret values (tokens the user handed the agent): redacted everywhere and
    # exported to the terminal's environment under their names.
    secrets: dict[str, SecretStr] = Field(default_factory=dict)
    # A notebook kernel's connection file: the python tool then runs in that kernel.
    kernel_connection_file: str | None = None
    # The network of the agent's commands and Python: False cuts it (where the sandbox can:
    # the process sandbox's bubblewrap jail); None keeps the conversation's earlier choice
    # (on for a new one). The server's policy can cut it for every conversation.
    network: bool | None = None
    extra_instructions: str = ""
    # The agent backend (an entry point of ``jupyter_convo.agents``); None: the one the
    # conversation ran with before, else the built-in agent.
    agent: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    # How long an external agent (ACP) may take to answer initialize and session/new.
    agent_start_timeout: float = Field(default=60.0, gt=0)

    @field_validator("confirmation_mode", mode="before")
    @classmethod
    def _policy(cls, value: object) -> object:
        if isinstance(value, bool):
            return "risky" if value else "never"
        return value

    @property
    def confirms(self) -> bool:
        """Do some actions wait for the user's confirmation?"""
        return self.confirmation_mode != "never"

    @field_serializer("secrets", when_used="json")
    def _secrets(self, value: dict[str, SecretStr], info: SerializationInfo) -> dict[str, str]:
        reveal = _reveals(info)
        return {name: s.get_secret_value() if reveal else str(s) for name, s in value.items()}

    def to_wire(self) -> dict[str, object]:
        """JSON form with secrets in clear, for the runtime's authenticated API only."""
        return self.model_dump(mode="json", context=REVEAL_SECRETS)
