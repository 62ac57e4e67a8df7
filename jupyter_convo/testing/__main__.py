"""Run the scripted LLM as its own process (CI-executed notebooks, manual trials).

    python -m jupyter_convo.testing --script script.json [--port 0] [--port-file PATH]

Prints the base URL (``http://127.0.0.1:PORT/v1``) on one stdout line once listening and,
with ``--port-file``, writes the port number to PATH (atomically). Stops on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from pydantic import ValidationError

from .script import load_script_file
from .server import ScriptedLLM


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m jupyter_convo.testing",
        description="Serve scripted OpenAI-compatible chat completions on 127.0.0.1.",
    )
    parser.add_argument(
        "--script",
        required=True,
        type=Path,
        action="append",
        help="JSON script file; repeat to serve the scripts of several files",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--port-file", type=Path, help="write the port number here when ready")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(message)s")

    llm = ScriptedLLM(host=args.host, port=args.port)
    for path in args.script:
        try:
            llm.load(load_script_file(path))
        except (OSError, ValueError, ValidationError) as exc:
            print(f"Cannot load script file {path}: {exc}", file=sys.stderr)
            return 2
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with llm.serve() as server:
        if args.port_file is not None:
            _write_atomically(args.port_file, str(server.port))
        print(server.base_url, flush=True)
        while not stop.wait(1.0):
            pass
    return 0


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
