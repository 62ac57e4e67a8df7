"""Which LLM and limits a conversation runs with: layered settings, first one set wins.

Order: per-conversation options > the user's settings > server config
(``c.ConvoExtension.llm_model`` ...) > environment (``JUPYTER_CONVO_LLM_MODEL``,
``JUPYTER_CONVO_LLM_BASE_URL``, ``JUPYTER_CONVO_LLM_API_KEY``, falling back to
``OPENAI_API_KEY`` / ``OPENAI_BASE_URL``).

One rule guards the operator's keys: a key from the server config or the environment is
only sent to a base URL that also comes from there (or to the SDK default). A user who
points a conversation at another endpoint without giving a key gets no key, rather than
the operator's key travelling to an endpoint of the user's choosing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import SecretStr

from ..agent.settings import (
    AgentSettings,
    CondensationSettings,
    ConfirmationPolicy,
    LLMConfig,
    SecuritySettings,
)
from .models import ConversationOptions

ENV_MODEL = "JUPYTER_CONVO_LLM_MODEL"
ENV_BASE_URL = "JUPYTER_CONVO_LLM_BASE_URL"
ENV_API_KEY = "JUPYTER_CONVO_LLM_API_KEY"
OPENAI_BASE_URL = "OPENAI_BASE_URL"
OPENAI_API_KEY = "OPENAI_API_KEY"


@dataclass(frozen=True)
class SettingsLayer:
    """One source of settings; None means "not set here, ask the next layer"."""

    name: str
    owner: Literal["user", "operator"]
    model: str | None = None
    base_url: str | None = None
    api_key: str | None = None
    max_iterations: int | None = None
    max_budget_per_task: float | None = None
    confirmation_mode: bool | ConfirmationPolicy | None = None
    security: SecuritySettings | None = None
    context_window: int | None = None
    condensation: CondensationSettings | None = None
    kernel_connection_file: str | None = None
    extra_instructions: str | None = None
    network: bool | None = None
    # Named secrets handed to the agent (exported to its terminal, redacted everywhere).
    secrets: Mapping[str, str] | None = None


_AGENT_FIELDS = (
    "max_iterations",
    "max_budget_per_task",
    "confirmation_mode",
    "security",
    "condensation",
    "kernel_connection_file",
    "extra_instructions",
    "network",
)


def _blank_to_none(value: str | None) -> str | None:
    return value if value else None


def options_layer(options: ConversationOptions | None) -> SettingsLayer:
    if options is None:
        return SettingsLayer("conversation", "user")
    return SettingsLayer(
        "conversation",
        "user",
        model=options.model,
        base_url=options.base_url,
        api_key=options.api_key.get_secret_value() if options.api_key else None,
        max_iterations=options.max_iterations,
        max_budget_per_task=options.max_budget_per_task,
        confirmation_mode=options.confirmation_mode,
        security=options.security,
        context_window=options.context_window,
        condensation=options.condensation,
        kernel_connection_file=options.kernel_connection_file,
        extra_instructions=options.extra_instructions,
        network=options.network,
    )


def server_layer(model: str | None, base_url: str | None) -> SettingsLayer:
    """``c.ConvoExtension.llm_model`` / ``llm_base_url`` (empty strings mean unset)."""
    return SettingsLayer(
        "server", "operator", model=_blank_to_none(model), base_url=_blank_to_none(base_url)
    )


def environment_layer(environ: Mapping[str, str]) -> SettingsLayer:
    return SettingsLayer(
        "environment",
        "operator",
        model=_blank_to_none(environ.get(ENV_MODEL)),
        base_url=_blank_to_none(environ.get(ENV_BASE_URL) or environ.get(OPENAI_BASE_URL)),
        api_key=_blank_to_none(environ.get(ENV_API_KEY) or environ.get(OPENAI_API_KEY)),
    )


def _first(layers: Sequence[SettingsLayer], name: str) -> tuple[SettingsLayer | None, object]:
    """The first layer setting ``name`` (None if none does) and its value."""
    for layer in layers:
        value = getattr(layer, name)
        if value is not None:
            return layer, value
    return None, None


def resolve_agent_settings(layers: Sequence[SettingsLayer]) -> AgentSettings:
    """Merge ``layers`` (highest priority first) into the settings a runtime gets."""
    llm_values: dict[str, object] = {}
    _, model = _first(layers, "model")
    if model is not None:
        llm_values["model"] = model
    url_layer, base_url = _first(layers, "base_url")
    if base_url is not None:
        llm_values["base_url"] = base_url
    _, window = _first(layers, "context_window")
    if window is not None:
        llm_values["context_window"] = window
    key_layer, api_key = _first(layers, "api_key")
    operator_key_to_user_url = (
        key_layer is not None
        and key_layer.owner == "operator"
        and url_layer is not None
        and url_layer.owner == "user"
    )
    if isinstance(api_key, str) and not operator_key_to_user_url:
        llm_values["api_key"] = SecretStr(api_key)
    agent_values: dict[str, object] = {"llm": LLMConfig.model_validate(llm_values)}
    for name in _AGENT_FIELDS:
        _, value = _first(layers, name)
        if value is not None:
            agent_values[name] = value
    _, secrets = _first(layers, "secrets")
    if isinstance(secrets, Mapping) and secrets:
        agent_values["secrets"] = {name: SecretStr(value) for name, value in secrets.items()}
    return AgentSettings.model_validate(agent_values)
