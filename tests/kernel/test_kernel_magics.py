"""``%convo`` / ``%%convo`` in IPython's test shell against a real server, runtime and agent.

The agent's answers come from the scripted LLM (the only double); everything else is the
real thing: the magic, the client over HTTP/WebSocket, the server, a runtime subprocess.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from jupyter_process import JupyterServer

from jupyter_convo.client import NO_SERVER_HELP
from jupyter_convo.kernel.conversation import Conversation
from jupyter_convo.kernel.magics import HELP, USAGE, ConvoMagics
from jupyter_convo.testing import ScriptedLLM, reply, tool_call

WAIT = 60.0


def say_hello_script(*answers: str) -> list[Any]:
    return [
        tool_call("terminal", {"command": "echo hello-from-agent", "security_risk": "low"}),
        *(reply(text) for text in answers),
    ]


def start(shell: Any, line: str) -> Conversation:
    result = shell.run_cell(f"conv = %convo {line}")
    assert result.success, result.error_in_exec
    conversation = shell.user_ns["conv"]
    assert isinstance(conversation, Conversation)
    return conversation


def test_start_gives_a_live_conversation(
    shell: Any,
    magics: ConvoMagics,
    kernel_llm: ScriptedLLM,
    convo_server: JupyterServer,
    task_text: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kernel_llm.add_script(say_hello_script("Said hello."), match=task_text)

    conv = start(
        shell,
        f'start "{task_text}" --title "Greeting" --max-iterations 5 --no-network --agent builtin',
    )

    assert conv.wait(WAIT) == "awaiting_user_input"
    assert magics.current is conv
    assert conv.last_message == "Said hello."
    assert conv.title == "Greeting"
    kinds = [e["kind"] for e in conv.events]
    assert kinds.count("llm_call") == 2 and "command_output" in kinds
    output = next(e for e in conv.events if e["kind"] == "command_output")
    assert "hello-from-agent" in output["output"]
    assert conv.metrics["llm_calls"] == 2
    assert conv.metrics["prompt_tokens"] > 0
    frame = conv.to_dataframe()
    assert len(frame) == len(conv.events)
    assert list(frame.columns[:5]) == ["timestamp", "source", "kind", "cause", "summary"]
    assert frame.loc[output["id"], "kind"] == "command_output"
    with monkeypatch.context() as without_pandas:
        without_pandas.setitem(sys.modules, "pandas", None)  # as if it were not installed
        with pytest.raises(ImportError, match=r"needs pandas: pip install pandas"):
            conv.to_dataframe()
    # The server got what the flags said; the request names the magic as its trigger.
    metadata = convo_server.client().get(conv.id)
    assert metadata["title"] == "Greeting" and metadata["trigger"] == "notebook"
    [sandbox] = [e for e in conv.events if e["kind"] == "sandbox"]
    assert sandbox["confined"] and sandbox["network"] is False  # --no-network
    starts = [e for e in conv.events if e["kind"] == "status" and e["status"] == "STARTING_RUNTIME"]
    assert [e["agent"] for e in starts] == ["builtin"]  # --agent
    assert conv.id in capsys.readouterr().out  # the view (its text form here) was shown


def test_send_and_cell_magic_continue_the_current_conversation(
    shell: Any, magics: ConvoMagics, kernel_llm: ScriptedLLM, task_text: str
) -> None:
    kernel_llm.add_script(say_hello_script("first", "second", "third"), match=task_text)
    conv = start(shell, f'start "{task_text}"')
    conv.wait(WAIT)

    assert shell.run_cell('%convo send "and again?"').success
    assert conv.wait(WAIT) == "awaiting_user_input"
    assert conv.last_message == "second"

    assert shell.run_cell(f"%%convo {conv.id}\nonce more,\non two lines").success
    assert conv.wait(WAIT) == "awaiting_user_input"
    assert conv.last_message == "third"
    user_texts = [
        e["text"] for e in conv.events if e["kind"] == "message" and e["source"] == "user"
    ]
    assert user_texts == [task_text, "and again?", "once more,\non two lines"]


def test_cell_magic_without_id_starts_a_conversation(
    shell: Any, magics: ConvoMagics, kernel_llm: ScriptedLLM, task_text: str
) -> None:
    kernel_llm.add_script([reply("done from a cell")], match=task_text)

    result = shell.run_cell(f'%%convo --title "From a cell"\n{task_text}\nwith details')

    assert result.success
    conv = magics.current
    assert conv is not None and conv.title == "From a cell"
    assert conv.wait(WAIT) == "awaiting_user_input"
    assert conv.last_message == "done from a cell"
    first = next(e for e in conv.events if e["kind"] == "message")
    assert first["text"] == f"{task_text}\nwith details"


def test_stop_resume_and_show_rebuild_from_the_log(
    shell: Any,
    magics: ConvoMagics,
    kernel_llm: ScriptedLLM,
    convo_server: JupyterServer,
    task_text: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    kernel_llm.add_script(say_hello_script("hello done", "after resume"), match=task_text)
    conv = start(shell, f'start "{task_text}"')
    conv.wait(WAIT)

    assert shell.run_cell("%convo stop").success
    assert f"Stopped conversation {conv.id}" in capsys.readouterr().out
    assert convo_server.client().get(conv.id)["status"] == "STOPPED"
    assert conv.wait(WAIT) in ("stopped", "awaiting_user_input")

    assert shell.run_cell(f"%convo resume {conv.id}").success
    assert conv.wait(WAIT) == "awaiting_user_input"
    assert convo_server.client().get(conv.id)["status"] == "RUNNING"

    # A fresh session (a reopened notebook) rebuilds the conversation from its log.
    shell.run_line_magic("reload_ext", "jupyter_convo")
    fresh_magics: ConvoMagics = shell._convo_magics
    assert fresh_magics is not magics and not fresh_magics.conversations
    assert shell.run_cell(f"shown = %convo show {conv.id}").success
    shown = shell.user_ns["shown"]
    assert shown is not conv and shown.id == conv.id
    assert shown.wait(WAIT) == "awaiting_user_input"
    server_count = convo_server.client().count_events(conv.id)
    assert len(shown.events) == server_count
    assert shown.last_message == "hello done"
    fresh_magics.close()


def test_list_and_status(
    shell: Any,
    magics: ConvoMagics,
    kernel_llm: ScriptedLLM,
    task_text: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert shell.run_cell("%convo status").success
    out = capsys.readouterr().out
    assert "Server: http://127.0.0.1:" in out and "No current conversation" in out
    assert "Sandboxes: docker (unavailable: this server runs 'process'" in out
    assert "process (default)" in out

    kernel_llm.add_script(say_hello_script("listed"), match=task_text)
    conv = start(shell, f'start "{task_text}" --title "Listed one"')
    conv.wait(WAIT)
    capsys.readouterr()

    listing = shell.run_cell("%convo list --limit 100").result
    assert conv.id in [item["id"] for item in listing.items]
    assert "Listed one" in listing._repr_html_() and conv.id in repr(listing)

    assert shell.run_cell("%convo status").success
    out = capsys.readouterr().out
    assert f"Conversation: {conv.id} (current)" in out
    assert "Status: RUNNING, agent: awaiting_user_input" in out
    assert "2 LLM calls" in out


def test_help(shell: Any, magics: ConvoMagics, capsys: pytest.CaptureFixture[str]) -> None:
    assert shell.run_cell("%convo --help").success
    assert capsys.readouterr().out.strip() == HELP.strip()
    shell.run_cell("%convo?")
    out = capsys.readouterr().out
    assert "%convo start" in out and "--kernel" in out


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('%convo start "x" --bogus', "unrecognized arguments: --bogus"),
        ("%convo frobnicate", "invalid choice: 'frobnicate'"),
        ("%convo start", "the following arguments are required: task"),
        # The kinds come from the server (GET capabilities), not from a list in the magics.
        ('%convo start "x" --sandbox k8s', "unknown sandbox 'k8s'; the server offers: docker"),
        ('%convo start "x" --max-iterations many', "invalid int value: 'many'"),
        ('%convo start "x" --max-iterations 0', "--max-iterations must be at least 1"),
        ('%convo start "x" --budget -1', "--budget must be more than 0"),
        ('%convo start "x" --confirm --no-confirm', "not allowed with argument"),
        ('%convo start "unclosed', "cannot parse the line"),
        ("%convo send a b c", "quote the message"),
        ('%convo start "x" --kernel', "--kernel needs a Jupyter kernel"),
        ('%convo start "x" --kernel --sandbox docker', "--kernel needs the process sandbox"),
        ("%convo stop", "no current conversation"),
        ("%%convo\n   ", "the cell is empty"),
        ("%%convo abc --model m\nhello", "start flags only apply to a new conversation"),
        ("%convo list --limit 1000", "--limit must be between 1 and 100"),
    ],
)
def test_bad_input_is_one_line_and_the_usage(
    shell: Any, magics: ConvoMagics, capsys: pytest.CaptureFixture[str], line: str, problem: str
) -> None:
    shell.run_cell(line)
    out, err = capsys.readouterr()
    text = out + err
    assert "Traceback" not in text
    first = text.strip().splitlines()[0]
    assert first.startswith("UsageError: %")
    assert problem in first
    if problem != "no current conversation":
        assert USAGE.splitlines()[0] in text


def test_refused_request_prints_the_server_reason(
    shell: Any, magics: ConvoMagics, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # The workspace must be inside the Jupyter root; tmp_path is not.
    result = shell.run_cell(f'conv = %convo start "never runs" --workspace {tmp_path}')
    out, err = capsys.readouterr()
    assert result.success and shell.user_ns["conv"] is None
    assert "Traceback" not in out + err
    assert "the server refused" in err and "outside the Jupyter root" in err and "HTTP 400" in err


def test_no_server_says_what_to_do(
    shell: Any,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from jupyter_convo.kernel.magics import load_ipython_extension

    monkeypatch.delenv("JUPYTER_CONVO_URL", raising=False)
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path))  # no running servers here
    load_ipython_extension(shell)
    shell.run_line_magic("config", "ConvoMagics.server_url = ''")
    try:
        assert shell.run_cell('%convo start "x"').success
        out, err = capsys.readouterr()
        assert err.strip() == NO_SERVER_HELP
        assert "Traceback" not in out + err

        # A server URL that nothing answers on: unreachable, said in one message.
        shell.run_line_magic("config", "ConvoMagics.server_url = 'http://127.0.0.1:9/'")
        shell._convo_magics.close()
        assert shell.run_cell("%convo list").success
        out, err = capsys.readouterr()
        assert err.startswith(NO_SERVER_HELP)
        assert "Tried: http://127.0.0.1:9/: unreachable" in err and "Traceback" not in out + err
    finally:
        shell._convo_magics.close()
