"""Settings layering for conversations: options > user > server config > environment."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from jupyter_convo.server.models import ConversationOptions
from jupyter_convo.server.resolve import (
    SettingsLayer,
    environment_layer,
    options_layer,
    resolve_agent_settings,
    server_layer,
)

ENV = {
    "JUPYTER_CONVO_LLM_MODEL": "env-model",
    "JUPYTER_CONVO_LLM_BASE_URL": "http://env.example/v1",
    "JUPYTER_CONVO_LLM_API_KEY": "env-key-123456",
}


def user(**values: object) -> SettingsLayer:
    return SettingsLayer("user", "user", **values)  # type: ignore[arg-type]


def test_first_layer_that_sets_a_value_wins() -> None:
    settings = resolve_agent_settings(
        [
            options_layer(ConversationOptions(max_iterations=7)),
            user(model="user-model", confirmation_mode=True, max_iterations=50),
            server_layer("server-model", "http://server.example/v1"),
            environment_layer(ENV),
        ]
    )
    assert settings.llm.model == "user-model"
    assert settings.llm.base_url == "http://server.example/v1"
    assert settings.max_iterations == 7
    assert settings.confirmation_mode == "risky"  # true reads as the risky policy
    assert settings.llm.api_key is not None
    assert settings.llm.api_key.get_secret_value() == "env-key-123456"


def test_environment_is_the_last_resort_with_openai_fallbacks() -> None:
    settings = resolve_agent_settings(
        [
            options_layer(None),
            server_layer("", ""),
            environment_layer(
                {"OPENAI_API_KEY": "sk-openai-123", "OPENAI_BASE_URL": "http://o/v1"}
            ),
        ]
    )
    assert settings.llm.base_url == "http://o/v1"
    assert settings.llm.api_key is not None
    assert settings.llm.api_key.get_secret_value() == "sk-openai-123"
    assert settings.llm.model == "gpt-4o-mini"  # LLMConfig's default when nobody sets one
    assert environment_layer({**ENV, "OPENAI_API_KEY": "other"}).api_key == "env-key-123456"


def test_operator_key_never_travels_to_a_users_endpoint() -> None:
    layers = [
        options_layer(ConversationOptions(base_url="http://attacker.example/v1")),
        user(),
        server_layer("m", None),
        environment_layer(ENV),
    ]
    assert resolve_agent_settings(layers).llm.api_key is None
    with_own_key = [
        options_layer(
            ConversationOptions(base_url="http://mine.example/v1", api_key="my-own-key-1")
        ),
        *layers[1:],
    ]
    key = resolve_agent_settings(with_own_key).llm.api_key
    assert key is not None and key.get_secret_value() == "my-own-key-1"


def test_user_key_goes_to_the_operators_endpoint_and_secrets_pass_through() -> None:
    settings = resolve_agent_settings(
        [
            options_layer(None),
            user(api_key="user-key-123", secrets={"GITHUB_TOKEN": "ghp-1234567"}),
            server_layer("m", "http://server.example/v1"),
            environment_layer(ENV),
        ]
    )
    assert settings.llm.api_key is not None
    assert settings.llm.api_key.get_secret_value() == "user-key-123"
    assert settings.secrets["GITHUB_TOKEN"].get_secret_value() == "ghp-1234567"
    assert "user-key-123" not in repr(settings)


def test_conversation_options_carry_the_agents_newer_settings() -> None:
    options = ConversationOptions.model_validate(
        {
            "confirmation_mode": "always",
            "security": {"analyzer": "none"},
            "context_window": 32_000,
            "condensation": {"keep_turns": 2, "threshold": 0.5},
        }
    )
    settings = resolve_agent_settings([options_layer(options)])
    assert settings.confirmation_mode == "always"
    assert settings.security.analyzer == "none"
    assert settings.llm.context_window == 32_000
    assert (settings.condensation.keep_turns, settings.condensation.threshold) == (2, 0.5)
    with pytest.raises(ValidationError, match="confirmation_mode"):
        ConversationOptions.model_validate({"confirmation_mode": "sometimes"})
