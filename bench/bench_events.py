"""How fast the event log appends, reads and searches; prints a Markdown table.

    python bench/bench_events.py [--events 100000] [--repeat 30]

Targets (from the issue): append <= 0.1 ms per event; reading 1,000 events <= 10 ms; a
100-event search page from a 100,000-event log <= 5 ms. Every row reads a log that is
already open: "cache off" rows with the parsed-event cache off (every event parsed from the
file), "warm" rows with the default cache. What a fresh process pays to open a stopped log
and read it (a server restart) is measured by ``bench_storage.py``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from _stats import Figure, markdown_table, measure

from jupyter_convo.events.log import EventLog
from jupyter_convo.events.redact import SecretRegistry
from jupyter_convo.events.schema import (
    CommandEvent,
    CommandOutputEvent,
    EventBase,
    LLMCallEvent,
    MessageEvent,
    ThinkEvent,
)

APPEND_TARGET = 1e-4
READ_TARGET = 10e-3
PAGE_TARGET = 5e-3


def conversation_step(i: int) -> list[EventBase]:
    """A realistic mix: an LLM call, a thought, a command and its output (~1.2 KB)."""
    return [
        LLMCallEvent(model="gpt-4o-mini", prompt_tokens=1200 + i, completion_tokens=80, cost=1e-4),
        ThinkEvent(thought=f"Step {i}: look at the columns of sales.csv again"),
        CommandEvent(command=f"python -c 'import pandas; print(pandas.read_csv(\"s{i}.csv\"))'"),
        CommandOutputEvent(
            cause=None,
            exit_code=0 if i % 7 else 1,
            output=("   month  revenue\n0  2024-01   1200.5\n" * 12)
            + ("KeyError: 'Région'\n" if i % 1000 == 0 else ""),
        ),
    ]


def events(n: int) -> list[EventBase]:
    out: list[EventBase] = [MessageEvent(source="user", text="clean sales.csv and plot revenue")]
    i = 0
    while len(out) < n:
        out.extend(conversation_step(i))
        i += 1
    return out[:n]


def time_appends(log: EventLog, sample: list[EventBase]) -> float:
    """Seconds per append of ``sample`` into ``log``."""
    start = time.perf_counter()
    for event in sample:
        log.append(event)
    return (time.perf_counter() - start) / len(sample)


def bench_append(root: Path, repeat: int) -> list[Figure]:
    sample = events(1000)
    secrets = SecretRegistry([f"sk-secret-value-{i:04d}" for i in range(20)])
    plain, redacted, synced = [], [], []
    for run in range(repeat):
        with EventLog(root / f"plain-{run}.jsonl") as log:
            plain.append(time_appends(log, sample))
        with EventLog(root / f"secrets-{run}.jsonl", secrets=secrets) as log:
            redacted.append(time_appends(log, sample))
    for run in range(5):  # fsync waits for the disk: fewer, smaller runs
        with EventLog(root / f"fsync-{run}.jsonl", fsync=True) as log:
            synced.append(time_appends(log, sample[:100]))
    return [
        Figure("append", plain, "event", APPEND_TARGET),
        Figure("append, 20 secrets registered", redacted, "event", APPEND_TARGET),
        Figure("append, fsync=True", synced, "event"),
    ]


def bench_read(root: Path, repeat: int) -> list[Figure]:
    path = root / "read.jsonl"
    with EventLog(path) as log:
        for event in events(5000):
            log.append(event)
    with EventLog(path, read_only=True, cache_bytes=0) as cold:
        cold_times = measure(lambda: cold.read(after_id=1999, limit=1000), repeat=repeat)
    with EventLog(path, read_only=True) as warm:
        warm_times = measure(lambda: warm.read(after_id=1999, limit=1000), repeat=repeat)
    return [
        Figure("read 1,000 events, cache off", cold_times, "1,000 events", READ_TARGET),
        Figure("read 1,000 events, warm", warm_times, "1,000 events", READ_TARGET),
    ]


def page_queries(log: EventLog, middle: int) -> list[tuple[str, Callable[[], object]]]:
    """The searches a UI makes: a page from the middle, the newest, the next, filtered."""
    cursor = log.search(after_id=middle - 1000, limit=1000).next_page_id
    kinds = ["think", "command"]
    return [
        ("page of 100, no filter", lambda: log.search(after_id=middle, limit=100)),
        ("page of 100, newest first", lambda: log.search(reverse=True, limit=100)),
        ("page of 100 via page_id", lambda: log.search(page_id=cursor, limit=100)),
        (
            "page of 100, kind=command_output",
            lambda: log.search(kind="command_output", after_id=middle, limit=100),
        ),
        (
            "page of 100, 2 kinds + source",
            lambda: log.search(kind=kinds, source="agent", after_id=middle, limit=100),
        ),
    ]


def bench_big_log(root: Path, n: int, repeat: int) -> list[Figure]:
    path = root / "big.jsonl"
    sample = events(n)
    start = time.perf_counter()
    with EventLog(path) as log:
        for event in sample:
            log.append(event)
    build = time.perf_counter() - start
    del sample
    size_mb = path.stat().st_size / 1e6
    figures = [
        Figure(f"write a {n:,}-event log ({size_mb:.0f} MB)", [build], "log"),
        Figure(
            f"open a {n:,}-event log (in this process, its index warm)",
            measure(lambda: EventLog(path, read_only=True).close(), repeat=3),
            "open",
        ),
    ]
    with EventLog(path, read_only=True, cache_bytes=0) as cold:
        for name, query in page_queries(cold, n // 2):
            figures.append(
                Figure(f"{name}, cache off", measure(query, repeat=repeat), "page", PAGE_TARGET)
            )
    with EventLog(path, read_only=True) as warm:
        for name, query in page_queries(warm, n // 2):
            figures.append(
                Figure(f"{name}, warm", measure(query, repeat=repeat), "page", PAGE_TARGET)
            )
        figures.append(
            Figure(
                "count(kind=command_output)",
                measure(lambda: warm.count(kind="command_output"), repeat=repeat),
                "count",
            )
        )
        figures.append(
            Figure(
                f"text search over all {n:,} events (rare word)",
                measure(lambda: warm.search(text="région", limit=100), repeat=5),
                "page",
            )
        )
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000, help="size of the big log")
    parser.add_argument("--repeat", type=int, default=30, help="runs per figure")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-events-") as tmp:
        root = Path(tmp)
        figures = bench_append(root, args.repeat)
        figures += bench_read(root, args.repeat)
        figures += bench_big_log(root, args.events, args.repeat)
    # Other processes slow wall-clock figures down: say how busy the machine was.
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    print(
        f"## Event log ({platform.python_implementation()} {platform.python_version()}, "
        f"{platform.machine()}, {os.cpu_count()} CPUs, load average {load}; "
        "wall-clock median and p95 over repeated runs)\n"
    )
    print(markdown_table(figures))
    print(f"\nTotal bench time: {time.perf_counter() - started:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
