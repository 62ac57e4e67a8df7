"""The cassette file: records, redaction, torn lines, and what LLMClient writes to it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jupyter_convo.agent.cassette import Cassette, CassetteError
from jupyter_convo.agent.llm import LLM_UNAVAILABLE, LLMClient, LLMError, LLMResponse
from jupyter_convo.events.redact import SecretRegistry
from jupyter_convo.testing import ScriptedLLM, call, error, llm_config_for, reply, tool_calls

REQUEST = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": None}
API_KEY = "sk-test-cassette-key-0123456789"


def test_record_and_read_back(tmp_path: Path) -> None:
    cassette = Cassette(tmp_path / "conv" / "cassette.jsonl")
    response = {"content": "hello", "tool_calls": []}
    failure = {"code": "LLM_UNAVAILABLE", "message": "down", "status_code": 503}

    cassette.record(REQUEST, None, failure, 0.5, attempt=1, final=False)
    cassette.record(REQUEST, response, None, 0.25, attempt=2)
    cassette.close()

    entries = Cassette(tmp_path / "conv" / "cassette.jsonl").entries()
    assert [(e.response, e.error, e.attempt, e.final) for e in entries] == [
        (None, failure, 1, False),
        (response, None, 2, True),
    ]
    assert entries[1].request == REQUEST
    assert entries[1].latency == 0.25
    lines = (tmp_path / "conv" / "cassette.jsonl").read_text().splitlines()
    assert len(lines) == 2 and all(json.loads(line) for line in lines)


def test_entry_needs_exactly_one_outcome(tmp_path: Path) -> None:
    cassette = Cassette(tmp_path / "cassette.jsonl")
    with pytest.raises(ValueError, match="exactly one"):
        cassette.record(REQUEST, None, None, 0.0)
    with pytest.raises(ValueError, match="exactly one"):
        cassette.record(REQUEST, {"content": "x"}, {"code": "X"}, 0.0)
    assert cassette.entries() == []


def test_secrets_are_redacted(tmp_path: Path) -> None:
    secrets = SecretRegistry([API_KEY])
    cassette = Cassette(tmp_path / "cassette.jsonl", secrets=secrets)
    request = {"messages": [{"role": "user", "content": f"my key is {API_KEY}"}]}

    stored = cassette.record(request, {"content": f"got {API_KEY}"}, None, 0.1)
    cassette.close()

    assert API_KEY.encode() not in (tmp_path / "cassette.jsonl").read_bytes()
    assert stored.request["messages"][0]["content"] == "my key is <secret-hidden>"
    assert cassette.entries()[0].response == {"content": "got <secret-hidden>"}


def test_torn_last_line_is_skipped_then_cut(tmp_path: Path) -> None:
    path = tmp_path / "cassette.jsonl"
    first = Cassette(path)
    first.record(REQUEST, {"content": "one"}, None, 0.1)
    first.close()
    with path.open("a") as handle:
        handle.write('{"timestamp": "2026-01-01T00:00:00Z", "requ')

    assert [e.response for e in Cassette(path).entries()] == [{"content": "one"}]

    again = Cassette(path)
    again.record(REQUEST, {"content": "two"}, None, 0.1)
    again.close()
    assert [e.response for e in again.entries()] == [{"content": "one"}, {"content": "two"}]


def test_damaged_middle_line_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "cassette.jsonl"
    cassette = Cassette(path)
    cassette.record(REQUEST, {"content": "one"}, None, 0.1)
    cassette.close()
    with path.open("a") as handle:
        handle.write("garbage\n")
    cassette.record(REQUEST, {"content": "three"}, None, 0.1)
    cassette.close()

    with pytest.raises(CassetteError, match="line 2"):
        cassette.entries()


def test_missing_file_has_no_entries(tmp_path: Path) -> None:
    cassette = Cassette(tmp_path / "nothing.jsonl")
    assert cassette.entries() == []
    assert not (tmp_path / "nothing.jsonl").exists()


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
async def test_client_records_every_exchange_without_the_key(
    tmp_path: Path, scripted_llm: ScriptedLLM, stream: bool
) -> None:
    scripted_llm.add_script(
        [
            error(503, "busy", times=1),
            tool_calls([call("terminal", {"command": "ls"}), call("think", {"thought": "t"})]),
            error(500, "broken", times=None),
        ]
    )
    path = tmp_path / "cassette.jsonl"
    cassette = Cassette(path)
    client = LLMClient(
        llm_config_for(scripted_llm, api_key=API_KEY, stream=stream, max_retries=1),
        cassette=cassette,
    )
    messages = [{"role": "user", "content": "list files"}]
    tools = [{"type": "function", "function": {"name": "terminal", "parameters": {}}}]

    response = await client.complete(messages, tools)
    with pytest.raises(LLMError) as caught:
        await client.complete([*messages, {"role": "assistant", "content": "done"}])
    await client.close()
    cassette.close()

    assert API_KEY.encode() not in path.read_bytes()
    entries = cassette.entries()
    assert [(e.attempt, e.final, e.error is None) for e in entries] == [
        (1, False, False),  # 503, retried
        (2, True, True),  # the answer
        (1, False, False),  # 500, retried
        (2, True, False),  # 500, final
    ]
    assert entries[0].error is not None and entries[0].error["status_code"] == 503
    assert "Gave up" not in entries[0].error["message"]
    assert entries[1].request["messages"] == messages
    assert entries[1].request["tools"] == tools
    assert entries[1].request["params"]["stream"] is stream
    assert LLMResponse.model_validate(entries[1].response) == response
    assert entries[3].error == caught.value.to_dict()
    assert entries[3].error["code"] == LLM_UNAVAILABLE


async def test_not_configured_is_recorded(tmp_path: Path) -> None:
    from jupyter_convo.agent.settings import LLMConfig

    cassette = Cassette(tmp_path / "cassette.jsonl")
    client = LLMClient(LLMConfig(base_url="https://llm.example/v1"), cassette=cassette, environ={})

    with pytest.raises(LLMError):
        await client.complete([{"role": "user", "content": "hi"}])
    cassette.close()

    [entry] = cassette.entries()
    assert entry.error is not None and entry.error["code"] == "LLM_NOT_CONFIGURED"


async def test_key_in_a_message_is_hidden_in_the_cassette(
    tmp_path: Path, scripted_llm: ScriptedLLM
) -> None:
    scripted_llm.add_script([reply(f"echo {API_KEY}")])
    cassette = Cassette(tmp_path / "cassette.jsonl")
    client = LLMClient(llm_config_for(scripted_llm, api_key=API_KEY), cassette=cassette)

    await client.complete([{"role": "user", "content": f"use {API_KEY}"}])
    await client.close()
    cassette.close()

    data = (tmp_path / "cassette.jsonl").read_bytes()
    assert API_KEY.encode() not in data
    assert data.count(b"<secret-hidden>") == 2
