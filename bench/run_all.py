"""Run every bench script and collect their Markdown tables into one report.

    python bench/run_all.py [--quick] [--only relay step ...] [--timeout 1800]

Each ``bench/bench_*.py`` runs in its own process (one after the other: they measure
time on a shared machine), with its full-size arguments, or small ones with ``--quick``
(a smoke run: same code paths, figures not comparable with the targets). Their output goes
to ``bench/results/RESULTS.md`` (git-ignored), headed by issue 15's table (metric | before |
now | goal, "now" as median and p95 of this run: the scripts record those figures through
``_summary.record``) and a summary of every row that has a target, and is printed as well.
A script that fails is reported with its exit status and the end of its stderr; the runner
goes on and exits 1 at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

BENCH = Path(__file__).resolve().parent
SUMMARY_ENV = "CONVO_BENCH_SUMMARY"  # as in _summary.py
RESULTS = BENCH / "results" / "RESULTS.md"

# Known scripts, in run order, with (full arguments, quick arguments). Scripts that land
# later run too: with --quick if their --help offers it, else with no arguments.
KNOWN: dict[str, tuple[list[str], list[str]]] = {
    "bench_events": ([], ["--events", "10000", "--repeat", "5"]),
    "bench_storage": ([], ["--quick"]),
    "bench_store": ([], ["--rows", "10000", "--repeat", "10"]),
    "bench_step": ([], ["--quick"]),
    "bench_relay": ([], ["--quick"]),
    "bench_relay_memory": ([], ["--quick"]),
    "bench_runtime_start": ([], ["--runs", "3"]),
    "bench_process_start": ([], ["--runs", "3"]),
    "bench_start": ([], ["--runs", "3"]),
    "bench_memory": ([], ["--quick"]),
    "bench_capacity": ([], ["--quick"]),
    "bench_confinement": ([], ["--quick"]),
    "bench_tools": ([], ["--repeat", "5"]),
    "bench_kernel": ([], ["--repeat", "3", "--events", "1000"]),
    "bench_share": ([], ["--events", "2000", "--repeat", "2", "--steps", "10"]),
}

TARGETS = """\
| target (issue 8) | measured by |
|---|---|
| process start warm <= 100 ms, cold <= 1 s | bench_start, bench_process_start, bench_runtime_start|
| docker start warm <= 150 ms, cold <= 3 s | bench_start (needs DOCKER_HOST and the runtime image) |
| append <= 0.1 ms/event; read 1,000 <= 10 ms; 100 of 100,000 <= 5 ms | bench_events |
| relay p50 <= 2 ms and >= 10,000 events/s | bench_relay |
| first search page at 100,000 conversations <= 10 ms | bench_store |
| step overhead <= 2 ms | bench_step |
| idle runtime <= 60 MB RSS | bench_memory |
| server RSS stops growing with relayed bytes (issue 11) | bench_relay_memory |
| concurrent running conversations before errors | bench_capacity |

| target (issue 15; today = main before it) | today | goal | measured by |
|---|---:|---:|---|
| open a stopped 100,000-event log, read 100 from the middle | 364 ms | <= 2 ms | bench_storage |
| same, 10,000 events of 4 KB | 52 ms | <= 2 ms | bench_storage |
| cold read of all 1,000 events of 4 KB | 45 ms | <= 5 ms | bench_storage |
| relay, 1 subscriber, burst: events delivered live per second | 1,152 | >= 20,000 | bench_relay |
| relay, 50 subscribers, burst: delivery latency p50 | 5.59 s | <= 50 ms | bench_relay |
| relay, paced: p50 latency with 1 / 50 subscribers | 2.16 / 10.1 ms | <= 1 / 3 ms | bench_relay |
| cassette size after 10,000 events | 112 MB | <= 2x the event log | bench_storage |
| process sandbox create -> READY, cold / warm | 800 / 63.5 ms | <= 250 / 20 ms | bench_start |

"Cold" rows run in a fresh process that opens the log file, as a server restart or a
stopped conversation pays (bench_storage); bench_events' "cache off" rows read an open log.
"""


@dataclass(frozen=True)
class IssueRow:
    """A row of issue 15's table: what it measures, the figure before, the goal, and the
    ``_summary.record`` keys its "now" cell is made of (two keys: "a / b")."""

    metric: str
    before: str
    goal: str
    keys: tuple[str, ...]


ISSUE_ROWS = [
    IssueRow(
        "open a stopped 100,000-event log and read a 100-event page from the middle",
        "364 ms",
        "<= 2 ms",
        ("storage_mixed_parsed",),
    ),
    IssueRow("same, 10,000 events of 4 KB", "52 ms", "<= 2 ms", ("storage_4kb-10k_parsed",)),
    IssueRow(
        "cold read of all 1,000 events of 4 KB", "45 ms", "<= 5 ms", ("storage_4kb-1k_parsed",)
    ),
    IssueRow(
        "relay, 1 subscriber, burst: events delivered live per second",
        "1,152; the runtime made 1,762",
        ">= what the runtime makes, and >= 20,000",
        ("relay_burst_rate_1", "relay_runtime_rate_1"),
    ),
    IssueRow(
        "relay, 50 subscribers, burst: delivery latency p50",
        "5.59 s",
        "<= 50 ms",
        ("relay_burst_latency_50",),
    ),
    IssueRow(
        "relay, paced: p50 latency with 1 / 50 subscribers",
        "2.16 / 10.1 ms",
        "<= 1 / 3 ms",
        ("relay_paced_latency_1", "relay_paced_latency_50"),
    ),
    IssueRow(
        "cassette size after 10,000 events",
        "112 MB",
        "<= 2x the event log",
        ("cassette_bytes", "cassette_log_bytes"),
    ),
    IssueRow(
        "process sandbox create -> READY, cold / warm",
        "800 / 63.5 ms",
        "<= 250 / 20 ms",
        ("start_process_cold_create_->_READY", "start_process_warm_create_->_READY"),
    ),
]


def load_summary(path: Path) -> dict[str, tuple[list[float], str]]:
    records: dict[str, tuple[list[float], str]] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            item = json.loads(line)
            records[item["key"]] = (item["values"], item["unit"])
    return records


def _figure(values: list[float], unit: str) -> str:
    """Median (and p95 when there are several values) in the value's unit."""
    median = statistics.median(values)
    ordered = sorted(values)
    p95 = ordered[max(0, -(-len(ordered) * 95 // 100) - 1)]
    if unit == "s":
        text, extra = format_duration(median), format_duration(p95)
    elif unit == "bytes":
        return f"{median / 1e6:.1f} MB"
    else:
        text, extra = f"{median:,.0f}", f"{p95:,.0f}"
    return text if len(values) == 1 else f"{text} (p95 {extra})"


def issue_table(records: dict[str, tuple[list[float], str]]) -> str:
    """Issue 15's table with today's figures: median, and p95 in brackets."""
    lines = ["| metric | before | now: median (p95) | goal |", "|---|---:|---:|---:|"]
    for row in ISSUE_ROWS:
        cells = [_figure(*records[key]) if key in records else "not run" for key in row.keys]
        now = " / ".join(cells)
        if row.keys[0] == "relay_burst_rate_1":
            now = f"{cells[0]}; the runtime made {cells[1]}"
        if row.keys[0] == "cassette_bytes":
            now = f"{cells[0]}; the log {cells[1]}"
        lines.append(f"| {row.metric} | {row.before} | {now} | {row.goal} |")
    return "\n".join(lines)


def format_duration(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} us"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


@dataclass
class Outcome:
    name: str
    command: list[str]
    seconds: float
    code: int
    stdout: str
    stderr: str


def scripts(only: list[str] | None) -> list[str]:
    present = sorted(path.stem for path in BENCH.glob("bench_*.py"))
    ordered = [name for name in KNOWN if name in present]
    ordered += [name for name in present if name not in KNOWN]
    if only:
        wanted = {name if name.startswith("bench_") else f"bench_{name}" for name in only}
        unknown = sorted(wanted - set(present))
        if unknown:
            raise SystemExit(f"no such bench script(s): {', '.join(unknown)}")
        ordered = [name for name in ordered if name in wanted]
    return ordered


def arguments(name: str, quick: bool) -> list[str]:
    if name in KNOWN:
        full, small = KNOWN[name]
        args = list(small if quick else full)
    elif quick and "--quick" in _help(name):
        args = ["--quick"]
    else:
        args = []
    if name == "bench_start" and not os.environ.get("DOCKER_HOST"):
        args.append("--no-docker")  # the docker cases need DOCKER_HOST and the image
    return args


def _help(name: str) -> str:
    result = subprocess.run(
        [sys.executable, str(BENCH / f"{name}.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return result.stdout


def run(name: str, args: list[str], timeout: float) -> Outcome:
    command = [sys.executable, str(BENCH / f"{name}.py"), *args]
    print(f"== {name} {' '.join(args)}", file=sys.stderr, flush=True)
    started = time.perf_counter()
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, cwd=BENCH.parent, check=False
        )
        code, stdout, stderr = result.returncode, result.stdout, result.stderr
    except subprocess.TimeoutExpired as exc:
        code = -1
        stdout = _text(exc.stdout)
        stderr = _text(exc.stderr) + f"\n(timed out after {timeout:.0f} s)"
    seconds = time.perf_counter() - started
    print(f"   {'ok' if code == 0 else f'FAILED ({code})'} in {seconds:.0f} s", file=sys.stderr)
    return Outcome(name, command, seconds, code, stdout, stderr)


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data if isinstance(data, str) else data.decode(errors="replace")


def target_rows(outcome: Outcome) -> list[str]:
    """Rows of the script's tables whose last cell says whether a target is met."""
    rows = []
    for line in outcome.stdout.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) >= 3 and cells[-1] in ("yes", "NO"):
            rows.append(f"| {outcome.name} | " + " | ".join(cells) + " |")
    return rows


def report(outcomes: list[Outcome], quick: bool, issue: str) -> str:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    lines = [
        "# Bench results",
        "",
        f"- {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, "
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"{platform.machine()}, {os.cpu_count()} CPUs, load average {load} at the end",
        f"- mode: {'quick (smoke sizes: not comparable with the targets)' if quick else 'full'}",
        "- command: `python bench/run_all.py" + (" --quick`" if quick else "`"),
        "",
        "## Issue 15: before, now, goal",
        "",
        "Before: main before issue 15 (from the issue). Now: this run, median (p95) over runs",
        "or events; a rate's p95 is over runs.",
        "",
        issue,
        "",
        "## Targets",
        "",
        TARGETS,
        "## Rows with a target",
        "",
        "| script | operation | median | p95 | target | meets target |",
        "|---|---|---:|---:|---:|:---:|",
    ]
    for outcome in outcomes:
        lines.extend(target_rows(outcome))
    failed = [o for o in outcomes if o.code != 0]
    if failed:
        lines += ["", "## Failed scripts", ""]
        lines += [f"- {o.name}: exit {o.code} after {o.seconds:.0f} s" for o in failed]
    for outcome in outcomes:
        command = " ".join(["python", *[_relative(part) for part in outcome.command[1:]]])
        lines += [
            "",
            f"## {outcome.name}",
            "",
            f"`{command}` ({outcome.seconds:.0f} s, exit {outcome.code})",
            "",
            _demote_headings(outcome.stdout.strip()) or "(no output)",
        ]
        if outcome.code != 0:
            tail = "\n".join(outcome.stderr.strip().splitlines()[-30:])
            lines += ["", "stderr (end):", "", "```", tail, "```"]
    return "\n".join(lines) + "\n"


def _relative(part: str) -> str:
    path = Path(part)
    if path.is_absolute() and BENCH.parent in path.parents:
        return str(path.relative_to(BENCH.parent))
    return part


def _demote_headings(text: str) -> str:
    """Scripts print '#'/'##' headings: nest them under the script's own section."""
    return re.sub(
        r"^(#{1,4}) ", lambda m: "#" * min(len(m.group(1)) + 2, 6) + " ", text, flags=re.M
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--only", nargs="+", help="script names, e.g. relay step")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per script")
    args = parser.parse_args(argv)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    summary = RESULTS.parent / "summary.jsonl"
    summary.unlink(missing_ok=True)
    os.environ[SUMMARY_ENV] = str(summary)  # the scripts append their figures there
    outcomes = [run(name, arguments(name, args.quick), args.timeout) for name in scripts(args.only)]
    issue = issue_table(load_summary(summary))
    text = report(outcomes, args.quick, issue)
    RESULTS.write_text(text, encoding="utf-8")
    print(text)
    print(f"written to {RESULTS}", file=sys.stderr)
    return 1 if any(o.code != 0 for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
