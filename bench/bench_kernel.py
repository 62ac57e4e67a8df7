"""How fast the notebook side is: extension load, a message round trip, the live view.

    python bench/bench_kernel.py [--repeat 20] [--events 1000 10000]

Starts a scripted LLM and a real Jupyter server with jupyter-convo (the same launcher as the
kernel tests), then measures, in this process's IPython shell:

- ``%load_ext jupyter_convo`` in a fresh Python (subprocesses: cold imports, as in a new kernel);
- ``%convo send`` round trip: from the magic to ``conv.wait()`` returning with the agent's
  reply streamed back over the WebSocket (scripted LLM: answers at once);
- the live view on a conversation of N events: building the view from events already
  received (the kernel side: the history handed to the widget, at most ``max_rows`` of it
  sent), and ``%convo show ID`` from the command to every event handed to the view
  (history over the WebSocket, parsed, batched). Drawing happens in the browser (the
  TypeScript renderer), outside this process.

Prints a Markdown table (median, p95). Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _stats import Figure, markdown_table, measure

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "kernel"))

from jupyter_process import JupyterServer, start_jupyter_server  # noqa: E402

from jupyter_convo.events.log import EventLog  # noqa: E402
from jupyter_convo.events.schema import (  # noqa: E402
    AgentState,
    AgentStateEvent,
    CommandEvent,
    CommandOutputEvent,
    EventBase,
    FileEditEvent,
    FileEditResultEvent,
    LLMCallEvent,
    MessageEvent,
    PythonEvent,
    PythonOutputEvent,
)
from jupyter_convo.testing import ScriptedLLM, reply  # noqa: E402

LOAD_EXT = """
import time
from IPython.core.interactiveshell import InteractiveShell
shell = InteractiveShell.instance()
start = time.perf_counter()
shell.run_line_magic("load_ext", "jupyter_convo")
print(time.perf_counter() - start)
"""


def load_ext_times(repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        out = subprocess.run(
            [sys.executable, "-c", LOAD_EXT], capture_output=True, text=True, check=True
        )
        times.append(float(out.stdout.strip().splitlines()[-1]))
    return times


def step_events(i: int) -> list[EventBase]:
    """One agent step of a realistic mix (~10 events, a few KB)."""
    return [
        LLMCallEvent(model="gpt-4o-mini", prompt_tokens=1500 + i, completion_tokens=90, cost=2e-4),
        MessageEvent(source="agent", text=f"Step {i}: I will **check** the `revenue` column."),
        CommandEvent(command=f"head -n 20 data/part-{i}.csv", security_risk="low"),
        CommandOutputEvent(output="month,revenue\n" + "2024-01,1200.5\n" * 20, exit_code=0),
        PythonEvent(code=f"df{i} = pd.read_csv('part-{i}.csv')\ndf{i}.describe()"),
        PythonOutputEvent(
            stdout="loaded\n",
            result={"text/plain": "       revenue\ncount  20.0\nmean   1200.5"},
        ),
        FileEditEvent(command="str_replace", path="clean.py", old_str="a", new_str="b"),
        FileEditResultEvent(path="clean.py", diff=f"--- a\n+++ b\n@@ -{i} +{i} @@\n-a\n+b"),
        AgentStateEvent(state=AgentState.RUNNING),
        AgentStateEvent(state=AgentState.AWAITING_USER_INPUT),
    ]


def conversation_with_events(server: JupyterServer, shell: Any, count: int) -> str:
    """A stopped conversation whose log holds ``count`` events (extended with EventLog)."""
    shell.run_cell(f'c = %convo start "bench history {count}" --no-view')
    conv = shell.user_ns["c"]
    conv.wait(60)
    conv.stop()
    conv.close()
    shell._convo_magics.conversations.pop(conv.id)  # followed afresh below, full history
    path = server.data_dir / "conversations" / conv.id / "events.jsonl"
    log = EventLog(path)
    i = 0
    while len(log) < count - 1:
        for event in step_events(i):
            if len(log) < count - 1:
                log.append(event)
        i += 1
    log.append(AgentStateEvent(state=AgentState.STOPPED))  # ends settled, as a real log does
    log.close()
    return str(conv.id)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--events", type=int, nargs="+", default=[1000, 10000])
    args = parser.parse_args()

    figures: list[Figure] = [
        Figure("%load_ext jupyter_convo (fresh process)", load_ext_times(args.repeat))
    ]

    llm = ScriptedLLM()
    llm.add_script([reply(f"answer {i}") for i in range(args.repeat * 3 + 10)], match="bench send")
    llm.add_script([reply("ok")])
    with llm.serve(), tempfile.TemporaryDirectory() as tmp:
        server = start_jupyter_server(Path(tmp), llm_base_url=llm.base_url)
        try:
            from IPython.testing import globalipapp

            globalipapp.start_ipython()
            shell = globalipapp.get_ipython()
            os.environ.update(server.env())
            shell.run_line_magic("load_ext", "jupyter_convo")

            shell.run_cell('conv = %convo start "bench send" --no-view')
            conv = shell.user_ns["conv"]
            conv.wait(60)

            def round_trip() -> None:
                shell.run_line_magic("convo", 'send --no-view "next"')
                conv.wait(60)

            figures.append(
                Figure("%convo send round trip", measure(round_trip, repeat=args.repeat))
            )
            for count in args.events:
                figures += view_figures(server, shell, count, max(3, args.repeat // 4))
        finally:
            shell.run_line_magic("unload_ext", "jupyter_convo")
            server.stop()

    print(f"# bench_kernel ({platform.python_version()}, {os.cpu_count()} CPUs)\n")
    print(markdown_table(figures))


def view_figures(server: JupyterServer, shell: Any, count: int, repeat: int) -> list[Figure]:
    conversation_id = conversation_with_events(server, shell, count)
    magics = shell._convo_magics
    conv = magics._conversation(conversation_id)
    conv.wait(120)  # the whole history has arrived

    assert len(conv.events) == count

    def render() -> None:
        view = conv.view()
        conv.sync_views(timeout=300)
        assert len(view.event_ids) == count
        view.close()

    def show() -> None:
        magics.conversations.pop(conversation_id, None)
        start = time.perf_counter()
        shell.run_line_magic("convo", f"show {conversation_id}")
        shown = magics.conversations[conversation_id]
        shown.wait(300)
        shown.sync_views(timeout=300)
        assert len(shown.events) == count
        timings.append(time.perf_counter() - start)
        shown.close()

    timings: list[float] = []
    for _ in range(repeat):
        show()
    return [
        Figure(f"view hand-off, {count:,} events received", measure(render, repeat=repeat)),
        Figure(f"%convo show, {count:,} events (stream + render)", timings),
    ]


if __name__ == "__main__":
    main()
