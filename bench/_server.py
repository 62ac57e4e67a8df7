"""A real Jupyter server with jupyter-convo and the scripted LLM, for end-to-end benches.

``bench_server(tmp)`` starts ``python -m jupyter_server`` with the extension (token auth,
private data and runtime dirs, other extensions off) pointed at a started ``ScriptedLLM``,
waits (``jupyter_convo.testing.jupyter_server``) until it accepts connections and yields a
``BenchServer``; on exit it stops the server and kills any runtime left. Figures from here
include every real hop: HTTP, WebSocket, the relay, the runtime process.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from jupyter_convo.testing import TEST_API_KEY, ScriptedLLM
from jupyter_convo.testing.jupyter_server import (
    QUIET_EXTENSIONS,
    kill_runtimes,
    start_server,
    stop_process,
)

READY_TIMEOUT = 60.0
EXIT_TIMEOUT = 30.0
REPO = Path(__file__).resolve().parent.parent


@dataclass
class BenchServer:
    proc: subprocess.Popen[bytes]
    url: str
    token: str
    data_dir: Path
    log_path: Path
    llm: ScriptedLLM

    @property
    def api(self) -> str:
        return self.url + "api/convo/"

    @property
    def ws_api(self) -> str:
        return "ws" + self.api[len("http") :]

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"}

    def runtime_pids(self) -> dict[str, int]:
        """conversation id -> runtime pid, from the sandbox records."""
        pids = {}
        for record in self.data_dir.glob("conversations/*/runtime.json"):
            with contextlib.suppress(OSError, ValueError):
                pids[record.parent.name] = int(json.loads(record.read_text())["pid"])
        return pids


@contextlib.contextmanager
def bench_server(
    base: Path, config: Mapping[str, object] | None = None, *, stream_chunk_chars: int = 8
) -> Iterator[BenchServer]:
    """``stream_chunk_chars``: characters per streamed chunk of the scripted LLM's answers
    (the openai SDK parses each chunk into models, ~0.4 ms each: big chunks keep a bench
    about what it measures rather than about the SDK)."""
    llm = ScriptedLLM(stream_chunk_chars=stream_chunk_chars)
    with llm.serve():
        token = secrets.token_hex(16)
        root, data_dir, runtime_dir = base / "root", base / "convo-data", base / "runtime"
        for path in (root, data_dir, runtime_dir):
            path.mkdir(parents=True, exist_ok=True)
        enabled = {name: False for name in QUIET_EXTENSIONS}
        enabled["jupyter_convo"] = True
        env = {
            **os.environ,
            "JUPYTER_RUNTIME_DIR": str(runtime_dir),
            "JUPYTER_CONVO_LLM_MODEL": llm.models[0],
            "JUPYTER_CONVO_LLM_API_KEY": TEST_API_KEY,
            "JUPYTER_CONVO_LLM_BASE_URL": llm.base_url,
            "PYTHONPATH": os.pathsep.join(
                [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
            ),
        }
        args = [
            "--ServerApp.allow_root=True",
            f"--ServerApp.token={token}",
            f"--ServerApp.root_dir={root}",
            "--ServerApp.jpserver_extensions=" + repr(enabled),
            f"--ConvoExtension.data_dir={data_dir}",
            "--ConvoExtension.keep_runtimes_on_shutdown=False",
        ]
        args += [f"--ConvoExtension.{name}={value}" for name, value in (config or {}).items()]
        log_path = base / "jupyter-server.log"
        started = start_server(
            args, env=env, cwd=root, log_path=log_path, ready_timeout=READY_TIMEOUT
        )
        server = BenchServer(started.proc, started.url, token, data_dir, log_path, llm)
        try:
            yield server
        finally:
            stop_process(server.proc, EXIT_TIMEOUT)
            kill_runtimes(data_dir)
