"""LLMClient against the scripted LLM server: assembly, retries, error codes, resolution."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any

import pytest

from jupyter_convo.agent.llm import (
    LLM_AUTHENTICATION,
    LLM_BAD_REQUEST,
    LLM_CONTEXT_TOO_LONG,
    LLM_NOT_CONFIGURED,
    LLM_RATE_LIMITED,
    LLM_UNAVAILABLE,
    MAX_BACKOFF,
    MAX_RETRY_AFTER,
    PLACEHOLDER_API_KEY,
    LLMClient,
    LLMError,
    display_url,
    is_local_url,
    parse_retry_after,
    resolve_endpoint,
    retry_delay,
)
from jupyter_convo.agent.settings import LLMConfig
from jupyter_convo.events.redact import SecretRegistry
from jupyter_convo.testing import (
    ScriptedLLM,
    call,
    context_length_error,
    error,
    llm_config_for,
    reply,
    tool_calls,
)

MESSAGES = [
    {"role": "system", "content": "You are a helpful agent."},
    {"role": "user", "content": "clean sales.csv"},
]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "terminal",
            "description": "run a command",
            "parameters": {"type": "object", "properties": {"command": {"type": "string"}}},
        },
    }
]


async def complete(config: LLMConfig, **kwargs: Any) -> Any:
    client = LLMClient(config, **kwargs)
    try:
        return await client.complete(MESSAGES, TOOLS)
    finally:
        await client.close()


async def failure(config: LLMConfig, **kwargs: Any) -> LLMError:
    with pytest.raises(LLMError) as caught:
        await complete(config, **kwargs)
    return caught.value


@pytest.fixture(params=[True, False], ids=["stream", "json"])
def stream(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


async def test_text_reply(scripted_llm: ScriptedLLM, stream: bool) -> None:
    scripted_llm.add_script([reply("All clean.")])
    config = llm_config_for(
        scripted_llm, stream=stream, input_cost_per_token=0.001, output_cost_per_token=0.002
    )

    response = await complete(config)

    assert response.content == "All clean."
    assert response.tool_calls == []
    assert response.finish_reason == "stop"
    assert response.model == "scripted-model"
    assert response.response_id.startswith("chatcmpl-")
    assert response.prompt_tokens > 0 and response.completion_tokens > 0
    assert response.cost == pytest.approx(
        response.prompt_tokens * 0.001 + response.completion_tokens * 0.002
    )
    assert response.latency > 0
    sent = scripted_llm.requests[0]
    assert sent["messages"] == MESSAGES
    assert sent["tools"] == TOOLS
    assert sent["temperature"] == 0.0
    assert bool(sent.get("stream")) is stream
    if stream:
        assert sent["stream_options"] == {"include_usage": True}


async def test_several_tool_calls_are_assembled(scripted_llm: ScriptedLLM, stream: bool) -> None:
    first = {"command": "head -n 5 sales.csv", "security_risk": "low"}
    second = {"code": "import pandas as pd\ndf = pd.read_csv('sales.csv')", "security_risk": "low"}
    scripted_llm.add_script(
        [tool_calls([call("terminal", first), call("python", second)], content="Let me look.")]
    )

    response = await complete(llm_config_for(scripted_llm, stream=stream))

    assert response.content == "Let me look."
    assert response.finish_reason == "tool_calls"
    assert [c.name for c in response.tool_calls] == ["terminal", "python"]
    assert [json.loads(c.arguments) for c in response.tool_calls] == [first, second]
    assert len({c.id for c in response.tool_calls}) == 2


async def test_missing_usage_counts_zero(stream: bool) -> None:
    llm = ScriptedLLM(send_usage=False)
    llm.add_script([reply("no usage here")])
    with llm.serve():
        response = await complete(llm_config_for(llm, stream=stream, input_cost_per_token=1.0))
    assert response.content == "no usage here"
    assert (response.prompt_tokens, response.completion_tokens, response.cost) == (0, 0, 0.0)


async def test_endpoint_rejecting_stream_options_still_streams() -> None:
    llm = ScriptedLLM(accept_stream_options=False)
    llm.add_script([reply("streamed anyway")])
    with llm.serve():
        response = await complete(llm_config_for(llm, stream=True))
    assert response.content == "streamed anyway"
    assert [("stream_options" in r) for r in llm.requests] == [True, False]


async def test_401_is_authentication_without_retry(scripted_llm: ScriptedLLM) -> None:
    key = "sk-proj-abcdefghijklmnop1234"
    scripted_llm.add_script(
        [error(401, f"Incorrect API key provided: {key}, also sk-proj-****1234.", times=None)]
    )

    err = await failure(llm_config_for(scripted_llm, api_key=key, max_retries=3))

    assert err.code == LLM_AUTHENTICATION
    assert err.status_code == 401
    assert "rejected the API key (401)" in err.message
    assert "Check the API key" in err.message
    assert key not in err.message and "1234" not in err.message
    assert len(scripted_llm.requests) == 1


async def test_wrong_key_against_a_key_checking_endpoint() -> None:
    llm = ScriptedLLM(require_api_key="right-key-123456")
    llm.add_script([reply("hi")])
    with llm.serve():
        err = await failure(llm_config_for(llm, api_key="wrong-key-987654"))
        ok = await complete(llm_config_for(llm))
    assert err.code == LLM_AUTHENTICATION
    assert "wrong-key-987654" not in err.message
    assert ok.content == "hi"


async def test_429_twice_then_success(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.add_script([error(429, "Slow down", times=2), reply("finally")])

    response = await complete(llm_config_for(scripted_llm, max_retries=3))

    assert response.content == "finally"
    assert len(scripted_llm.requests) == 3


async def test_retry_after_header_is_honoured(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.add_script([error(429, "Slow down", times=1, retry_after=0), reply("ok")])

    response = await complete(llm_config_for(scripted_llm, retry_base_delay=60))

    assert response.content == "ok"
    assert len(scripted_llm.requests) == 2


async def test_429_forever_is_rate_limited(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.add_script([error(429, "Too many requests", times=None)])

    err = await failure(llm_config_for(scripted_llm, max_retries=2))

    assert err.code == LLM_RATE_LIMITED
    assert err.status_code == 429
    assert "Too many requests" in err.message
    assert "Gave up after 3 attempts" in err.message
    assert len(scripted_llm.requests) == 3


async def test_insufficient_quota_is_not_retried(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.add_script([error(429, "You exceeded your quota", code="insufficient_quota")])

    err = await failure(llm_config_for(scripted_llm, max_retries=3))

    assert err.code == LLM_RATE_LIMITED
    assert len(scripted_llm.requests) == 1


async def test_500_is_retried_then_unavailable(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.add_script([error(500, "The server had an error", times=None)])

    err = await failure(llm_config_for(scripted_llm, max_retries=2))

    assert err.code == LLM_UNAVAILABLE
    assert err.status_code == 500
    assert "HTTP 500" in err.message and "The server had an error" in err.message
    assert len(scripted_llm.requests) == 3


async def test_503_then_success(scripted_llm: ScriptedLLM, stream: bool) -> None:
    scripted_llm.add_script([error(503, "overloaded"), reply("back")])

    response = await complete(llm_config_for(scripted_llm, stream=stream))

    assert response.content == "back"
    assert len(scripted_llm.requests) == 2


async def test_context_length_is_not_retried(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.add_script([context_length_error(times=None)])

    err = await failure(llm_config_for(scripted_llm, max_retries=3))

    assert err.code == LLM_CONTEXT_TOO_LONG
    assert err.status_code == 400
    assert "too long for model 'scripted-model'" in err.message
    assert len(scripted_llm.requests) == 1


async def test_other_4xx_is_bad_request(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.add_script([error(404, "The model 'nope' does not exist", times=None)])

    err = await failure(llm_config_for(scripted_llm, model="nope", max_retries=3))

    assert err.code == LLM_BAD_REQUEST
    assert err.status_code == 404
    assert "Check the model name 'nope'" in err.message
    assert len(scripted_llm.requests) == 1


async def test_a_scripted_llm_without_scripts_says_so_at_once(scripted_llm: ScriptedLLM) -> None:
    err = await failure(llm_config_for(scripted_llm, max_retries=3))

    assert err.code == LLM_BAD_REQUEST
    assert "has no scripts loaded" in err.message
    assert len(scripted_llm.requests) == 1  # not retried: asking again cannot help


async def test_unreachable_endpoint_is_unavailable() -> None:
    llm = ScriptedLLM()
    with llm.serve():
        config = llm_config_for(llm, max_retries=1)
    # the server is stopped: nothing listens on its port any more

    err = await failure(config)

    assert err.code == LLM_UNAVAILABLE
    assert "Could not reach the LLM endpoint" in err.message
    assert "Gave up after 2 attempts" in err.message


async def test_timeout_is_unavailable(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.add_script([reply("too late", gate="never-opened")])

    err = await failure(llm_config_for(scripted_llm, timeout=0.2, max_retries=1))

    assert err.code == LLM_UNAVAILABLE
    assert "did not answer within 0.2s" in err.message
    assert len(scripted_llm.requests) == 2


async def test_missing_key_is_not_configured() -> None:
    config = LLMConfig(base_url="https://llm.example.com/v1")

    err = await failure(config, environ={})

    assert err.code == LLM_NOT_CONFIGURED
    assert "https://llm.example.com/v1" in err.message
    assert "JUPYTER_CONVO_LLM_API_KEY" in err.message


async def test_environment_fallbacks_reach_the_endpoint() -> None:
    llm = ScriptedLLM(require_api_key="env-key-abcdef")
    llm.add_script([reply("via env")])
    with llm.serve():
        config = LLMConfig(model="scripted-model", retry_base_delay=0.01, max_retries=0)
        ours = {
            "JUPYTER_CONVO_LLM_API_KEY": "env-key-abcdef",
            "JUPYTER_CONVO_LLM_BASE_URL": llm.base_url,
        }
        openais = {"OPENAI_API_KEY": "env-key-abcdef", "OPENAI_BASE_URL": llm.base_url}
        first = await complete(config, environ=ours)
        second = await complete(config, environ=openais)
    assert first.content == second.content == "via env"


async def test_local_endpoint_without_key_gets_a_placeholder(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.add_script([reply("local")])
    config = LLMConfig(model="scripted-model", base_url=scripted_llm.base_url, max_retries=0)

    response = await complete(config, environ={})

    assert response.content == "local"


async def test_api_key_is_registered_as_secret(scripted_llm: ScriptedLLM) -> None:
    secrets = SecretRegistry()
    client = LLMClient(llm_config_for(scripted_llm, api_key="registered-key-42"), secrets=secrets)
    assert "registered-key-42" in secrets
    assert "registered-key-42" not in repr(client.endpoint)
    await client.close()


def test_resolve_endpoint_precedence() -> None:
    env = {
        "JUPYTER_CONVO_LLM_API_KEY": "ours-123456",
        "OPENAI_API_KEY": "openai-123456",
        "JUPYTER_CONVO_LLM_BASE_URL": "https://ours.example/v1",
        "OPENAI_BASE_URL": "https://openai.example/v1",
    }
    assert resolve_endpoint(LLMConfig(), env).api_key == "ours-123456"
    assert resolve_endpoint(LLMConfig(), env).base_url == "https://ours.example/v1"
    explicit = LLMConfig.model_validate(
        {"api_key": "config-123456", "base_url": "https://config.example/v1"}
    )
    assert resolve_endpoint(explicit, env).api_key == "config-123456"
    assert resolve_endpoint(explicit, env).base_url == "https://config.example/v1"
    local = resolve_endpoint(LLMConfig(base_url="http://localhost:11434/v1"), {})
    assert local.api_key == PLACEHOLDER_API_KEY
    with pytest.raises(LLMError) as caught:
        resolve_endpoint(LLMConfig(model="  "), env)
    assert caught.value.code == LLM_NOT_CONFIGURED
    with pytest.raises(LLMError, match=r"api\.openai\.com"):
        resolve_endpoint(LLMConfig(), {})


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("http://localhost:11434/v1", True),
        ("http://127.0.0.1:8000/v1", True),
        ("http://[::1]:8000/v1", True),
        ("http://192.168.1.20:1234/v1", True),
        ("http://ollama:11434/v1", True),
        ("http://host.docker.internal:11434/v1", True),
        ("https://api.openai.com/v1", False),
        ("https://openrouter.ai/api/v1", False),
        ("https://8.8.8.8/v1", False),
    ],
)
def test_is_local_url(url: str, local: bool) -> None:
    assert is_local_url(url) is local


def test_display_url_hides_credentials() -> None:
    assert (
        display_url("https://user:pw-secret@llm.example:8443/v1") == "https://llm.example:8443/v1"
    )
    assert display_url(None) == "https://api.openai.com/v1"
    assert display_url("http://127.0.0.1:1/v1") == "http://127.0.0.1:1/v1"


def test_retry_delay_and_retry_after() -> None:
    assert [retry_delay(a, 0.5) for a in range(4)] == [0.5, 1.0, 2.0, 4.0]
    assert retry_delay(30, 1.0) == MAX_BACKOFF
    assert retry_delay(0, 1.0, retry_after=7.0) == 7.0
    assert retry_delay(0, 1.0, retry_after=10_000) == MAX_RETRY_AFTER
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert parse_retry_after({}) is None
    assert parse_retry_after({"retry-after": "soon"}) is None
    later = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=60), usegmt=True)
    parsed = parse_retry_after({"retry-after": later})
    assert parsed is not None and 0 < parsed <= 60


@pytest.fixture
async def client_for_cancel(scripted_llm: ScriptedLLM) -> AsyncIterator[LLMClient]:
    client = LLMClient(llm_config_for(scripted_llm))
    yield client
    await client.close()


async def test_cancelling_a_call_in_flight(
    scripted_llm: ScriptedLLM, client_for_cancel: LLMClient
) -> None:
    scripted_llm.add_script([reply("held", gate="hold")])
    task = asyncio.ensure_future(client_for_cancel.complete(MESSAGES))
    await asyncio.to_thread(scripted_llm.wait_for_requests, 1, 5.0)

    task.cancel()

    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(scripted_llm.requests) == 1
