"""What a stopped conversation costs to read, and what its cassette costs on disk.

    python bench/bench_storage.py [--quick] [--runs 20] [--events 100000]

"Cold" means what a server restart or a stopped conversation pays: every timed run is a
fresh Python process (imports done before the clock starts) that opens the log file and
reads from it; nothing of the log is in that process's memory. The OS page cache is warm
(the files were just written), as it is on a server that reads a conversation it wrote.

Rows (issue 15; medians and p95 over ``--runs`` processes, printed, never asserted):

- open a stopped 100,000-event log (the usual mix of LLM calls, thoughts, commands and
  outputs, as ``bench_events``) and read a 100-event page from the middle;
- the same with 10,000 events of 4 KB;
- read all 1,000 events of a 1,000-event log of 4 KB events;
- the same reads as raw JSON lines (``read_raw``, what a relay forwards without parsing),
  when the log offers it;
- the cassette after a 10,000-event run: every LLM request as the ``LLMClient`` records it
  (system prompt, tool specs and the whole history, built by the agent's own history
  builder), against the size of the run's event log.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _stats import Figure, format_duration, markdown_table
from _summary import record
from bench_events import events as mixed_events

from jupyter_convo.events.log import EventLog
from jupyter_convo.events.schema import (
    CommandEvent,
    CommandOutputEvent,
    EventBase,
    LLMCallEvent,
    MessageEvent,
)

PAGE_TARGET = 2e-3
READ_ALL_TARGET = 5e-3
CASSETTE_TARGET_RATIO = 2.0

# Runs in a fresh interpreter: import first (not timed), then open + read (timed).
CHILD = r"""
import json, sys, time
from jupyter_convo.events.log import EventLog
import os
path, mode, after, limit = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
started = time.perf_counter()
if mode == "floor":  # no log at all: read the whole file and split its lines
    fd = os.open(path, os.O_RDONLY)
    items = os.pread(fd, os.fstat(fd).st_size, 0).split(b"\n")[:-1]
    elapsed = time.perf_counter() - started
    os.close(fd)
else:
    log = EventLog(path, read_only=True)
    if mode == "raw":
        items = log.read_raw(after_id=after, limit=limit)
    else:
        items = log.search(after_id=after, limit=limit).items
    elapsed = time.perf_counter() - started
    log.close()
print(json.dumps({"seconds": elapsed, "count": len(items)}))
"""


def big_events(n: int, size: int) -> list[EventBase]:
    """Command outputs of about ``size`` bytes each (a long ``pip install`` or a data frame)."""
    body = ("0  2024-01   1200.5  Région Nord  " * (size // 32 + 1))[:size]
    return [CommandOutputEvent(exit_code=0, output=f"{i} {body}") for i in range(n)]


def write_log(path: Path, sample: list[EventBase]) -> float:
    with EventLog(path) as log:
        for event in sample:
            log.append(event)
    return path.stat().st_size / 1e6


def has_raw_reads() -> bool:
    return hasattr(EventLog, "read_raw")


def cold_runs(path: Path, mode: str, after: int, limit: int, runs: int) -> list[float]:
    """Seconds of open + read in ``runs`` fresh processes."""
    timings = []
    for _ in range(runs):
        result = subprocess.run(
            [sys.executable, "-c", CHILD, str(path), mode, str(after), str(limit)],
            capture_output=True,
            text=True,
            check=True,
        )
        data = json.loads(result.stdout)
        if data["count"] != limit:
            raise RuntimeError(f"{path.name}: read {data['count']} events, expected {limit}")
        timings.append(data["seconds"])
    return timings


def bench_cold_reads(root: Path, n_mixed: int, runs: int) -> tuple[list[Figure], list[str]]:
    cases = [
        ("mixed", mixed_events(n_mixed), n_mixed // 2, 100, PAGE_TARGET),
        ("4kb-10k", big_events(10_000, 4096), 5_000, 100, PAGE_TARGET),
        ("4kb-1k", big_events(1_000, 4096), -1, 1_000, READ_ALL_TARGET),
    ]
    labels = {
        "mixed": f"open a stopped {n_mixed:,}-event log, read 100 from the middle",
        "4kb-10k": "open a stopped 10,000-event log of 4 KB events, read 100 from the middle",
        "4kb-1k": "open a stopped 1,000-event log of 4 KB events, read all 1,000",
    }
    figures: list[Figure] = []
    notes: list[str] = []
    modes = ["parsed", "raw"] if has_raw_reads() else ["parsed"]
    for name, sample, after, limit, target in cases:
        path = root / name / "events.jsonl"
        path.parent.mkdir()
        size = write_log(path, sample)
        index = path.with_suffix(".idx")
        notes.append(
            f"- `{name}`: {len(sample):,} events, {size:.1f} MB"
            + (f", index {index.stat().st_size / 1e6:.2f} MB" if index.exists() else "")
        )
        del sample
        for mode in modes:
            label = labels[name] + (", raw lines (read_raw)" if mode == "raw" else ", parsed")
            timings = cold_runs(path, mode, after, limit, runs)
            figures.append(Figure(f"{label}, fresh process", timings, "open + read", target))
            record(f"storage_{name}_{mode}", timings, "s")
        if after < 0:  # reading everything: what the machine gives for the file's bytes
            figures.append(
                Figure(
                    f"  floor: read the {size:.1f} MB file and split its lines, no log ({name})",
                    cold_runs(path, "floor", after, limit, runs),
                )
            )
        if index.exists():  # what the first open of a log without an index pays, once
            rebuilds = []
            for _ in range(min(runs, 3)):
                index.unlink()
                rebuilds += cold_runs(path, "parsed", after, limit, 1)
            figures.append(Figure(f"  same, first open without an index ({name})", rebuilds))
    return figures, notes


def bench_cassette(root: Path, n_events: int) -> tuple[list[str], list[str]]:
    """Record a ``n_events``-event run's LLM requests; compare the cassette with the log."""
    from jupyter_convo.agent.cassette import Cassette
    from jupyter_convo.agent.history import IncrementalHistory
    from jupyter_convo.agent.llm import LLMClient, LLMResponse, ToolCall
    from jupyter_convo.agent.prompts import system_prompt
    from jupyter_convo.agent.settings import AgentSettings, LLMConfig
    from jupyter_convo.agent.tools import build_tools
    from jupyter_convo.agent.workspace import Workspace

    directory = root / "cassette-run"
    workspace = Workspace(directory / "workspace")
    settings = AgentSettings(llm=LLMConfig(model="gpt-4o-mini"))
    specs = [tool.spec() for tool in build_tools(workspace, settings)]
    prompt = system_prompt(workspace=str(workspace.root))
    client = LLMClient(settings.llm, environ={})
    history = IncrementalHistory(system_prompt=prompt, max_chars=settings.max_output_chars)
    log = EventLog(directory / "events.jsonl")
    cassette = Cassette(directory / "cassette.jsonl")
    started = time.perf_counter()
    log.append(MessageEvent(source="user", text="clean sales.csv and plot revenue by month"))
    step = 0
    while len(log) < n_events:
        messages = history.messages(log.read(after_id=history.checkpoint))
        request = client._cassette_request(messages, specs)  # what complete() records
        command = f"python -c 'import pandas; print(pandas.read_csv(\"s{step}.csv\").head())'"
        call_id = f"call_{step}"
        response = LLMResponse(
            tool_calls=[
                ToolCall(id=call_id, name="terminal", arguments=json.dumps({"command": command}))
            ],
            prompt_tokens=1200 + step,
            completion_tokens=80,
        )
        cassette.record(request, response.model_dump(), None, 0.8)
        log.append(LLMCallEvent(model="gpt-4o-mini", prompt_tokens=1200 + step))
        action = log.append(CommandEvent(command=command, tool_call_id=call_id))
        output = f"   month  revenue  step {step}\n" + "0  2024-01   1200.5\n" * 12
        log.append(CommandOutputEvent(cause=action.id, exit_code=0, output=output))
        step += 1
    seconds = time.perf_counter() - started
    log.close()
    cassette.close()
    log_bytes = (directory / "events.jsonl").stat().st_size
    cassette_bytes = (directory / "cassette.jsonl").stat().st_size
    ratio = cassette_bytes / log_bytes
    record("cassette_bytes", [cassette_bytes], "bytes")
    record("cassette_log_bytes", [log_bytes], "bytes")
    meets = "yes" if ratio <= CASSETTE_TARGET_RATIO else "NO"
    rows = [
        "| operation | median | p95 | target | meets target |",
        "|---|---:|---:|---:|:---:|",
        f"| cassette size after {n_events:,} events ({step:,} LLM requests; per run) "
        f"| {cassette_bytes / 1e6:.1f} MB | - "
        f"| <= {CASSETTE_TARGET_RATIO:g}x the event log ({log_bytes / 1e6:.1f} MB) | {meets} |",
    ]
    notes = [
        f"- cassette / event log = {ratio:.2f}; {cassette_bytes / step:,.0f} bytes per request; "
        f"recording the run took {format_duration(seconds)} "
        f"({format_duration(seconds / step)} per step, history building included)",
    ]
    return rows, notes


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 runs, 10,000 mixed events")
    parser.add_argument("--runs", type=int, default=20, help="fresh processes per row")
    parser.add_argument("--events", type=int, default=100_000, help="size of the mixed log")
    parser.add_argument(
        "--cassette-events", type=int, default=10_000, help="events of the cassette run (0: none)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.events, args.cassette_events = 5, 10_000, 2_000
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-storage-") as tmp:
        root = Path(tmp)
        figures, notes = bench_cold_reads(root, args.events, args.runs)
        cassette_rows, cassette_notes = (
            bench_cassette(root, args.cassette_events) if args.cassette_events else ([], [])
        )
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    print(
        f"## Stopped conversations: cold reads and cassette size "
        f"({platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, load average {load}; median and p95 over {args.runs} "
        "fresh processes)\n"
    )
    print(markdown_table(figures))
    print()
    print("\n".join(notes))
    print()
    print("\n".join(cassette_rows))
    print()
    print("\n".join(cassette_notes))
    print(f"\nTotal bench time: {time.perf_counter() - started:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
