"""The scripted LLM server, driven by the real ``openai`` SDK over real HTTP."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from jupyter_convo.testing import (
    ScriptedLLM,
    call,
    context_length_error,
    error,
    load_script_file,
    reply,
    tool_call,
    tool_calls,
)

USER = {"role": "user", "content": "clean the data please"}


def assistant(text: str = "ok") -> dict[str, Any]:
    return {"role": "assistant", "content": text}


def ask(client: OpenAI, **kwargs: Any) -> Any:
    """One chat completion; untyped because the tests send plain dicts."""
    kwargs.setdefault("model", "m")
    return client.chat.completions.create(**kwargs)


@pytest.fixture
def client(scripted_llm: ScriptedLLM) -> Iterator[OpenAI]:
    with OpenAI(base_url=scripted_llm.base_url, api_key="k-test-123", max_retries=0) as c:
        yield c


def test_non_streaming_text_reply(scripted_llm: ScriptedLLM, client: OpenAI) -> None:
    scripted_llm.add_script([reply("Hello there")])

    result = ask(client, model="my-model", messages=[USER])

    assert result.object == "chat.completion"
    assert result.model == "my-model"
    assert result.id.startswith("chatcmpl-")
    choice = result.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == "Hello there"
    assert choice.message.tool_calls is None
    assert choice.finish_reason == "stop"
    assert result.usage is not None
    assert result.usage.prompt_tokens > 0
    assert result.usage.total_tokens == result.usage.prompt_tokens + result.usage.completion_tokens


def test_non_streaming_several_tool_calls(scripted_llm: ScriptedLLM, client: OpenAI) -> None:
    scripted_llm.add_script(
        [
            tool_calls(
                [call("terminal", {"command": "ls", "security_risk": "low"}), ("think", {"t": 1})],
                content="Looking around",
            )
        ]
    )

    result = ask(client, model="m", messages=[USER])

    choice = result.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Looking around"
    calls = choice.message.tool_calls or []
    assert [(c.type, c.function.name) for c in calls] == [
        ("function", "terminal"),
        ("function", "think"),
    ]
    assert json.loads(calls[0].function.arguments) == {"command": "ls", "security_risk": "low"}
    assert len({c.id for c in calls}) == 2


def test_usage_is_deterministic_or_scripted(scripted_llm: ScriptedLLM, client: OpenAI) -> None:
    scripted_llm.add_script([reply("same")], match="first")
    scripted_llm.add_script([reply("given", prompt_tokens=7, completion_tokens=3)], match="given")
    message = {"role": "user", "content": "first"}

    one = ask(client, model="m", messages=[message]).usage
    two = ask(client, model="m", messages=[message]).usage
    given = ask(client, model="m", messages=[{"role": "user", "content": "given"}]).usage

    assert one == two
    assert given is not None
    assert (given.prompt_tokens, given.completion_tokens, given.total_tokens) == (7, 3, 10)


def test_streaming_splits_content_and_arguments(scripted_llm: ScriptedLLM, client: OpenAI) -> None:
    arguments = {"command": "python clean.py --input sales.csv", "security_risk": "low"}
    scripted_llm.add_script(
        [
            tool_calls(
                [call("terminal", arguments), call("think", {"thought": "x" * 30})], content="A"
            )
        ]
    )

    chunks = list(
        ask(client, model="m", messages=[USER], stream=True, stream_options={"include_usage": True})
    )

    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    fragments: dict[int, list[str]] = {}
    names: dict[int, str] = {}
    content = ""
    for chunk in chunks:
        for choice in chunk.choices:
            content += choice.delta.content or ""
            for part in choice.delta.tool_calls or []:
                if part.function and part.function.name:
                    names[part.index] = part.function.name
                if part.function and part.function.arguments:
                    fragments.setdefault(part.index, []).append(part.function.arguments)
    assert content == "A"
    assert names == {0: "terminal", 1: "think"}
    assert json.loads("".join(fragments[0])) == arguments
    assert len(fragments[0]) > 1 and len(fragments[1]) > 1
    finishes = [ch.finish_reason for c in chunks for ch in c.choices if ch.finish_reason]
    assert finishes == ["tool_calls"]
    # include_usage: a last chunk with no choices carries the usage
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_streaming_without_include_usage_sends_no_usage(
    scripted_llm: ScriptedLLM, client: OpenAI
) -> None:
    scripted_llm.add_script([reply("Hello, streaming world")])

    chunks = list(ask(client, model="m", messages=[USER], stream=True))

    assert all(c.usage is None for c in chunks)
    assert "".join(ch.delta.content or "" for c in chunks for ch in c.choices) == (
        "Hello, streaming world"
    )
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_routing_by_match_then_default(scripted_llm: ScriptedLLM, client: OpenAI) -> None:
    scripted_llm.add_script([reply("default answer")])
    scripted_llm.add_script([reply("cleaning")], match="clean the data")
    scripted_llm.add_script([reply("plotting")], match="plot")

    def answer(text: str | list[dict[str, str]]) -> str | None:
        messages = [{"role": "system", "content": "sys"}, {"role": "user", "content": text}]
        result = ask(client, model="m", messages=messages)
        return result.choices[0].message.content

    assert answer("please clean the data now") == "cleaning"
    assert answer("plot revenue") == "plotting"
    assert answer("something else") == "default answer"
    # content parts are matched by their text
    parts = [{"type": "text", "text": "can you plot it"}]
    assert answer(parts) == "plotting"


def test_step_is_the_number_of_assistant_messages(
    scripted_llm: ScriptedLLM, client: OpenAI
) -> None:
    scripted_llm.add_script([reply("zero"), reply("one"), reply("two")])

    def answer(messages: list[dict[str, Any]]) -> str | None:
        result = ask(client, model="m", messages=messages)
        return result.choices[0].message.content

    history = [USER, assistant(), {"role": "user", "content": "more"}, assistant()]
    assert answer(history) == "two"
    assert answer(history[:2]) == "one"
    assert answer([USER]) == "zero"
    # stateless: the same request again gets the same step
    assert answer(history[:2]) == "one"


def test_concurrent_conversations_are_routed_independently(
    scripted_llm: ScriptedLLM, client: OpenAI
) -> None:
    scripted_llm.add_script([reply("a0"), reply("a1")], match="alpha")
    scripted_llm.add_script([reply("b0"), reply("b1")], match="beta")

    def answer(name: str, step: int) -> str | None:
        messages = [{"role": "user", "content": name}] + [assistant()] * step
        result = ask(client, model="m", messages=messages)
        return result.choices[0].message.content

    jobs = [(n, s) for n in ("alpha", "beta") for s in (0, 1)] * 4
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda job: answer(*job), jobs))

    assert answers == [f"{n[0]}{s}" for n, s in jobs]


def test_errors_are_served_before_their_step(scripted_llm: ScriptedLLM, client: OpenAI) -> None:
    scripted_llm.add_script(
        [reply("first"), error(429, "Slow down", times=2, retry_after=3), reply("second")]
    )
    messages = [USER, assistant()]

    for _ in range(2):
        with pytest.raises(openai.RateLimitError) as caught:
            ask(client, model="m", messages=messages)
        assert caught.value.response.headers["retry-after"] == "3"
        assert caught.value.body == {
            "message": "Slow down",
            "type": "rate_limit_error",
            "param": None,
            "code": None,
        }
    result = ask(client, model="m", messages=messages)
    assert result.choices[0].message.content == "second"
    # the step before is unaffected by the errors of the next one
    assert ask(client, model="m", messages=[USER]).choices[0].message.content == "first"
    assert len(scripted_llm.requests) == 4


def test_permanent_error_and_context_length(scripted_llm: ScriptedLLM, client: OpenAI) -> None:
    scripted_llm.add_script([error(401, "Bad key", times=None)], match="auth")
    scripted_llm.add_script([context_length_error()], match="long")

    for _ in range(3):
        with pytest.raises(openai.AuthenticationError):
            ask(client, model="m", messages=[{"role": "user", "content": "auth"}])
    with pytest.raises(openai.BadRequestError) as caught:
        ask(client, model="m", messages=[{"role": "user", "content": "long"}])
    assert caught.value.code == "context_length_exceeded"
    assert "maximum context length" in caught.value.message


def test_exhausted_script_fails_loudly(scripted_llm: ScriptedLLM, client: OpenAI) -> None:
    scripted_llm.add_script([reply("only one")])

    with pytest.raises(openai.InternalServerError) as caught:
        ask(client, model="m", messages=[USER, assistant()])

    assert caught.value.code == "script_exhausted"
    assert "ran out of steps" in caught.value.message
    assert "only 1 response(s)" in caught.value.message


def test_no_matching_script_fails_loudly(scripted_llm: ScriptedLLM, client: OpenAI) -> None:
    scripted_llm.add_script([reply("x")], match="something specific")
    scripted_llm.add_script([reply("y")], match="Tidy up")

    with pytest.raises(openai.BadRequestError) as caught:  # asking again cannot help
        ask(client, model="m", messages=[USER])

    assert caught.value.code == "no_script"
    assert "clean the data please" in caught.value.message
    # It says which tasks it knows, and what else to do.
    assert "one of: 'something specific', 'Tidy up'." in caught.value.message
    assert "JUPYTER_CONVO_LLM_MODEL" in caught.value.message


def test_adding_a_script_with_the_same_match_replaces_it(
    scripted_llm: ScriptedLLM, client: OpenAI
) -> None:
    scripted_llm.add_script([reply("old")])
    scripted_llm.add_script([reply("new")])

    result = ask(client, model="m", messages=[USER])

    assert result.choices[0].message.content == "new"
    assert len(scripted_llm.book.scripts) == 1


def test_models_and_unknown_routes(scripted_llm: ScriptedLLM, client: OpenAI) -> None:
    assert [m.id for m in client.models.list()] == ["scripted-model"]
    response = httpx.post(f"{scripted_llm.base_url}/completions", json={"prompt": "x"})
    assert response.status_code == 404
    assert "No route" in response.json()["error"]["message"]
    bad = httpx.post(
        f"{scripted_llm.base_url}/chat/completions",
        content=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert bad.status_code == 400
    assert "not valid JSON" in bad.json()["error"]["message"]


def test_requests_are_recorded(scripted_llm: ScriptedLLM, client: OpenAI) -> None:
    scripted_llm.add_script([reply("a"), reply("b")])
    tools = [{"type": "function", "function": {"name": "think", "parameters": {}}}]

    ask(client, model="m", messages=[USER], tools=tools)
    ask(client, model="m", messages=[USER, assistant("a")])

    bodies = scripted_llm.wait_for_requests(2, timeout=5)
    assert bodies[0]["tools"] == tools
    assert bodies[1]["messages"] == [USER, assistant("a")]
    with pytest.raises(TimeoutError, match="received 2 request"):
        scripted_llm.wait_for_requests(3, timeout=0.05)


def test_required_api_key() -> None:
    llm = ScriptedLLM(require_api_key="the-right-key")
    llm.add_script([reply("welcome")])
    with llm.serve() as server:
        with (
            OpenAI(base_url=server.base_url, api_key="the-wrong-key", max_retries=0) as wrong,
            pytest.raises(openai.AuthenticationError),
        ):
            ask(wrong, model="m", messages=[USER])
        with OpenAI(base_url=server.base_url, api_key="the-right-key", max_retries=0) as right:
            result = ask(right, model="m", messages=[USER])
    assert result.choices[0].message.content == "welcome"


def test_gate_holds_the_answer_until_opened(scripted_llm: ScriptedLLM, client: OpenAI) -> None:
    scripted_llm.add_script([reply("released", gate="go")])

    with ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(ask, client, messages=[USER])
        scripted_llm.wait_for_requests(1, timeout=5)
        assert not future.done()
        scripted_llm.open_gate("go")
        result = future.result(timeout=10)

    assert result.choices[0].message.content == "released"


def test_stop_cuts_held_answers_and_closes_the_port() -> None:
    llm = ScriptedLLM()
    llm.add_script([reply("never", gate="closed")])
    server = llm.start()
    client = OpenAI(base_url=server.base_url, api_key="k", max_retries=0, timeout=10)
    outcome: list[BaseException] = []

    def call_llm() -> None:
        try:
            ask(client, model="m", messages=[USER])
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=call_llm)
    worker.start()
    llm.wait_for_requests(1, timeout=5)
    llm.stop()
    worker.join(timeout=10)

    assert not worker.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], openai.APIConnectionError)
    with pytest.raises(openai.APIConnectionError):
        ask(client, model="m", messages=[USER])
    client.close()


async def test_start_is_awaitable_and_async_context() -> None:
    llm = ScriptedLLM()
    server = await llm.start()
    assert server.base_url == llm.base_url
    assert server.base_url.startswith("http://127.0.0.1:")
    llm.stop()
    with pytest.raises(RuntimeError, match="not started"):
        _ = llm.base_url
    async with ScriptedLLM() as other:
        assert other.base_url.endswith("/v1")


def test_script_file_round_trip(tmp_path: Path) -> None:
    llm = ScriptedLLM(models=("m1", "m2"))
    llm.add_script([tool_call("terminal", {"command": "ls"}), error(500, times=None)])
    llm.add_script([context_length_error(), reply("short")], match="long")
    path = tmp_path / "script.json"

    llm.save(path)
    loaded = load_script_file(path)

    assert loaded == llm.to_script_file()
    assert loaded.models == ["m1", "m2"]
    (tmp_path / "bare.json").write_text('[{"type": "response", "content": "hi"}]')
    bare = load_script_file(tmp_path / "bare.json")
    assert bare.scripts[0].match is None
    assert bare.scripts[0].steps[0] == reply("hi")


def test_script_file_errors_name_the_problem(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"scripts": [{"steps": [{"type": "response", "contnet": "typo"}]}]}')

    with pytest.raises(ValueError, match="contnet"):
        load_script_file(path)
    with pytest.raises(ValueError, match="at least one call"):
        tool_calls([])


def _read_line(process: subprocess.Popen[str], timeout: float) -> str:
    """One stdout line, or fail after ``timeout`` seconds instead of hanging."""
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            raise AssertionError(f"no output from the scripted LLM process within {timeout}s")
    return process.stdout.readline()


def test_cli_serves_a_script_file(tmp_path: Path) -> None:
    script = tmp_path / "script.json"
    script.write_text(
        json.dumps({"scripts": [{"match": None, "steps": [{"type": "response", "content": "hi"}]}]})
    )
    port_file = tmp_path / "port"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyter_convo.testing",
            "--script",
            str(script),
            "--port-file",
            str(port_file),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        base_url = _read_line(process, timeout=30).strip()
        port = int(port_file.read_text())
        assert base_url == f"http://127.0.0.1:{port}/v1"
        with OpenAI(base_url=base_url, api_key="k", max_retries=0) as client:
            result = ask(client, model="m", messages=[USER])
        assert result.choices[0].message.content == "hi"
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr


def test_cli_rejects_a_bad_script_file(tmp_path: Path) -> None:
    script = tmp_path / "script.json"
    script.write_text('{"scripts": "nope"}')

    result = subprocess.run(
        [sys.executable, "-m", "jupyter_convo.testing", "--script", str(script)],
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert result.returncode == 2
    assert "Cannot load script file" in result.stderr
    assert "scripts" in result.stderr
