"""How fast a runtime is usable: process start -> ready line, and -> first bind answered.

Each run starts ``python -m jupyter_convo.runtime`` as a process sandbox does, reads its
ready line from stdout, binds a conversation (``POST /api/conversations`` without an initial
message, so no LLM is called), stops it through the API and waits for the exit.

    python bench/bench_runtime_start.py [--runs 10]

Prints a Markdown table (median and p95). Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import selectors
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from _stats import Figure, markdown_table

READY_PREFIX = "JUPYTER_CONVO_RUNTIME_READY "
TIMEOUT = 60.0


def read_ready_line(proc: subprocess.Popen[bytes]) -> dict[str, int]:
    assert proc.stdout is not None
    deadline = time.monotonic() + TIMEOUT
    buffer = b""
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not selector.select(deadline - time.monotonic()):
                continue
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                raise RuntimeError(f"runtime exited before its ready line: {buffer!r}")
            buffer += chunk
            complete = buffer[: buffer.rfind(b"\n") + 1]
            for line in complete.decode(errors="replace").splitlines():
                if line.startswith(READY_PREFIX):
                    return dict(json.loads(line[len(READY_PREFIX) :]))
    raise RuntimeError(f"runtime not ready after {TIMEOUT} s")


def one_run(root: Path, index: int) -> tuple[float, float, float]:
    """Seconds to the ready line, to the bind answered, and the stop round trip."""
    key = secrets.token_urlsafe(32)
    env = {**os.environ, "JUPYTER_CONVO_SESSION_KEY": key}
    log_file = root / f"runtime-{index}.log"
    start = time.perf_counter()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyter_convo.runtime",
            "--conversations-root",
            str(root / "conversations"),
            "--log-file",
            str(log_file),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    try:
        ready = read_ready_line(proc)
        to_ready = time.perf_counter() - start
        cid = f"bench-{index}"
        with httpx.Client(
            base_url=f"http://127.0.0.1:{ready['port']}",
            headers={"X-Session-API-Key": key},
            timeout=TIMEOUT,
        ) as client:
            response = client.post("/api/conversations", json={"conversation_id": cid})
            to_bind = time.perf_counter() - start
            response.raise_for_status()
            stop_start = time.perf_counter()
            client.post(f"/api/conversations/{cid}/stop").raise_for_status()
        proc.wait(timeout=TIMEOUT)
        to_exit = time.perf_counter() - stop_start
        return to_ready, to_bind, to_exit
    finally:
        if proc.stdout is not None:
            proc.stdout.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    ready: list[float] = []
    bound: list[float] = []
    stopped: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-runtime-") as tmp:
        for index in range(args.runs):
            to_ready, to_bind, to_exit = one_run(Path(tmp), index)
            ready.append(to_ready)
            bound.append(to_bind)
            stopped.append(to_exit)
    print(f"runtime start, {args.runs} runs (python {sys.version.split()[0]})\n")
    print(
        markdown_table(
            [
                Figure("process start -> ready line", ready, per="start"),
                Figure("process start -> POST /api/conversations answered", bound, per="start"),
                Figure("POST stop -> process exited", stopped, per="stop"),
            ]
        )
    )


if __name__ == "__main__":
    main()
