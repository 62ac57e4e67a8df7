"""``jupyter convo list|show|start|send|stop|resume|delete`` against a real server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from jupyter_process import JupyterServer

from jupyter_convo.testing import ScriptedLLM, reply, tool_call

TIMEOUT = 120.0


def cli(
    server: JupyterServer | None, *args: str, cwd: Path, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTER_CONVO_")}
    if server is not None:
        env.update(server.env())
    else:
        # Nowhere to look: no address given and no running servers in an empty runtime dir.
        env["JUPYTER_RUNTIME_DIR"] = str(cwd / "empty-runtime")
    return subprocess.run(
        [sys.executable, "-m", "jupyter_convo.cli", *args],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=TIMEOUT,
        cwd=cwd,
        env=env,
        check=False,
    )


def test_a_conversation_from_the_terminal(
    convo_server: JupyterServer, kernel_llm: ScriptedLLM, task_text: str, tmp_path: Path
) -> None:
    kernel_llm.add_script(
        [
            tool_call("terminal", {"command": "echo from-the-cli", "security_risk": "low"}),
            reply("Said it."),
            reply("Second answer."),
            reply("Back after resume."),
        ],
        match=task_text,
    )
    started = cli(
        convo_server,
        "start",
        task_text,
        "--title",
        "CLI run",
        "--no-network",
        "--agent",
        "builtin",
        "-f",
        cwd=tmp_path,
    )
    assert started.returncode == 0, started.stdout + started.stderr
    lines = started.stdout.splitlines()
    assert lines[0].startswith("start task ") and "start task READY" in lines
    conversation_id = next(line for line in lines if line.startswith("conversation ")).split()[1]
    assert any(line.endswith("$ echo from-the-cli") for line in lines)
    assert "    from-the-cli" in lines  # the command's output, indented under it
    assert any(line.endswith("agent: Said it.") for line in lines)
    assert "agent is awaiting_user_input" in lines[-1]
    jailed = "sandbox: confined (bubblewrap), network off"
    assert sum(line.endswith(jailed) for line in lines) == 1
    unknown = cli(convo_server, "start", "x", "--agent", "nope", cwd=tmp_path)
    assert unknown.returncode != 0 and "unknown agent 'nope'" in unknown.stderr + unknown.stdout

    listed = cli(convo_server, "list", "--search", "CLI run", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    header, rule, row = listed.stdout.splitlines()[:3]
    assert header.split() == ["ID", "STATUS", "AGENT", "TITLE", "UPDATED", "COST"]
    assert set(rule.replace(" ", "")) == {"-"}
    assert row.startswith(conversation_id) and "RUNNING" in row and "CLI run" in row

    sent = cli(convo_server, "send", conversation_id, "and again", "-f", cwd=tmp_path)
    assert sent.returncode == 0, sent.stderr
    assert any(line.endswith("agent: Second answer.") for line in sent.stdout.splitlines())

    shown = cli(convo_server, "show", conversation_id, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith(f"CLI run  [{conversation_id}]\nstatus RUNNING")
    for text in ("$ echo from-the-cli", "agent: Said it.", "user: and again", "Second answer."):
        assert text in shown.stdout

    stopped = cli(convo_server, "stop", conversation_id, cwd=tmp_path)
    assert (stopped.returncode, stopped.stdout) == (0, f"stopped {conversation_id}\n")
    assert "status STOPPED" in cli(convo_server, "show", conversation_id, cwd=tmp_path).stdout

    resumed = cli(convo_server, "resume", conversation_id, cwd=tmp_path)
    assert (resumed.returncode, resumed.stdout) == (0, f"resumed {conversation_id}\n")
    again = cli(convo_server, "send", conversation_id, "still there?", "-f", cwd=tmp_path)
    assert any(line.endswith("agent: Back after resume.") for line in again.stdout.splitlines())
    # The restarted runtime kept the conversation's network off.
    history = cli(convo_server, "show", conversation_id, cwd=tmp_path).stdout.splitlines()
    assert sum(line.endswith(jailed) for line in history) == 2

    kept = cli(convo_server, "delete", conversation_id, cwd=tmp_path, stdin="n\n")
    assert kept.returncode == 1 and kept.stdout.rstrip().endswith("kept")
    deleted = cli(convo_server, "delete", conversation_id, "--yes", cwd=tmp_path)
    assert (deleted.returncode, deleted.stdout) == (0, f"deleted {conversation_id}\n")
    gone = cli(convo_server, "show", conversation_id, cwd=tmp_path)
    assert gone.returncode == 1 and "the server answered 404" in gone.stderr


def test_bad_input_and_no_server_are_said_plainly(
    convo_server: JupyterServer, tmp_path: Path
) -> None:
    (tmp_path / "empty-runtime").mkdir()
    nowhere = cli(None, "list", cwd=tmp_path)
    assert nowhere.returncode == 2
    assert nowhere.stderr.startswith("jupyter convo: No Jupyter server with jupyter-convo")
    assert "JUPYTER_CONVO_URL" in nowhere.stderr and "Traceback" not in nowhere.stderr

    bad_flag = cli(convo_server, "list", "--limit", "many", cwd=tmp_path)
    assert bad_flag.returncode == 2 and "invalid int value: 'many'" in bad_flag.stderr

    # Sandbox kinds are the server's (GET capabilities): an unknown one is refused before
    # anything starts, naming what the server offers.
    offered = cli(convo_server, "capabilities", cwd=tmp_path)
    assert offered.returncode == 0, offered.stderr
    [process] = [line for line in offered.stdout.splitlines() if line.startswith("process")]
    assert "(default)" in process and " yes " in process
    unknown = cli(convo_server, "start", "x", "--sandbox", "k8s", cwd=tmp_path)
    assert unknown.returncode == 2
    assert "unknown sandbox 'k8s'; the server offers: docker (unavailable" in unknown.stderr

    out_of_range = cli(convo_server, "list", "--limit", "1000", cwd=tmp_path)
    assert out_of_range.returncode == 1
    assert "the server answered 400" in out_of_range.stderr and "limit" in out_of_range.stderr


def test_follow_exits_non_zero_when_the_agent_fails_and_the_demo_says_what_it_knows(
    convo_server: JupyterServer, kernel_llm: ScriptedLLM, task_text: str, tmp_path: Path
) -> None:
    kernel_llm.add_script([reply("never used")], match=task_text)
    # No script matches this task: the scripted LLM refuses it, the agent fails.
    failed = cli(convo_server, "start", f"something else {task_text[::-1]}", "-f", cwd=tmp_path)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "agent is error" in failed.stdout
    why = failed.stderr.strip()
    assert why.startswith("jupyter convo: conversation ") and "the agent is error" in why
    # The reason names the tasks the scripted (demo) LLM knows, this test's among them.
    assert "only answers tasks that contain one of: " in why and repr(task_text) in why

    conversation_id = next(
        line.split()[1] for line in failed.stdout.splitlines() if line.startswith("conversation ")
    )
    assert cli(convo_server, "stop", conversation_id, cwd=tmp_path).returncode == 0
    # Nothing to follow on a stopped conversation: said, not waited on forever.
    shown = cli(convo_server, "show", conversation_id, "--follow", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.rstrip().endswith("(the conversation is STOPPED: nothing to follow)")


def test_the_readme_client_example_ends_when_the_agent_rests(
    convo_server: JupyterServer, kernel_llm: ScriptedLLM, tmp_path: Path
) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    example = next(
        block
        for block in readme.split("```python\n")[1:]
        if "from jupyter_convo.client import ConvoClient" in block
    ).split("```")[0]
    task = "Plot revenue by month from sales.csv"
    assert task in example
    kernel_llm.add_script([reply("Here is the plot.")], match=task)
    done = subprocess.run(
        [sys.executable, "-c", example],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,  # the example used to follow the live stream forever
        cwd=tmp_path,
        env={**os.environ, **convo_server.env()},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "WORKING" and "READY" in lines
    assert "message Here is the plot." in lines
    assert lines[-1] == "agent_state "  # the agent rests: awaiting the user's next message
