"""``python -m jupyter_convo.runtime``: the nested server that hosts one conversation.

The session key comes from ``JUPYTER_CONVO_SESSION_KEY`` (never the command line). Once
listening, the runtime writes its ready file (atomically) and prints one ready line; with
``--log-file`` it then points stdout/stderr at that file so it can outlive its parent.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from ..events.redact import SecretRegistry
from .app import DEFAULT_MAX_JSON_BODY_BYTES, DEFAULT_MAX_UPLOAD_BYTES, RuntimeSettings

log = logging.getLogger("jupyter_convo.runtime")

# httpx imports its command-line tool (click, rich, pygments: ~5 MB per runtime) whenever
# they are installed; a runtime never uses it, and httpx falls back when it cannot.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

READY_PREFIX = "JUPYTER_CONVO_RUNTIME_READY"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Exit status when the runtime refuses to start (no key, unusable arguments).
EXIT_USAGE = 2


class RedactingFormatter(logging.Formatter):
    """Hides registered secrets in every formatted record, tracebacks included."""

    def __init__(self, secrets: SecretRegistry) -> None:
        super().__init__(LOG_FORMAT)
        self.secrets = secrets

    def format(self, record: logging.LogRecord) -> str:
        return self.secrets.redact(super().format(record))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m jupyter_convo.runtime",
        description="Host one jupyter-convo conversation behind the runtime API. "
        "The session key is read from JUPYTER_CONVO_SESSION_KEY.",
    )
    parser.add_argument("--conversations-root", required=True, type=Path)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--ready-file", type=Path, default=None)
    parser.add_argument("--log-file", type=Path, default=None)
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument(
        "--max-upload-bytes",
        type=int,
        default=DEFAULT_MAX_UPLOAD_BYTES,
        help="largest upload-files request body (413 beyond)",
    )
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port {args.port} is not a port number")
    if args.max_upload_bytes < 1:
        parser.error("--max-upload-bytes must be positive")
    return args


def configure_logging(log_file: Path | None, level: str, secrets: SecretRegistry) -> None:
    handler: logging.Handler
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(log_file, encoding="utf-8")
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    if root.level > logging.DEBUG:
        logging.getLogger("tornado.access").setLevel(logging.WARNING)


def write_ready_file(path: Path, info: dict[str, int]) -> None:
    """Write ``info`` so that readers never see a partial file (temp file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(info), encoding="utf-8")
    os.replace(tmp, path)


def announce_ready(info: dict[str, int]) -> None:
    """Print the ready line in one write (a reader may close the pipe right after it)."""
    sys.stdout.flush()
    line = f"{READY_PREFIX} {json.dumps(info)}\n".encode()
    try:
        os.write(sys.stdout.fileno(), line)
    except OSError as exc:
        # Nobody listens any more (the parent went away); the ready file still says it.
        log.warning("could not print the ready line: %s", exc)


def redirect_std_streams(log_file: Path) -> None:
    """Point fds 1 and 2 at the log file: the parent may close its pipe and go away."""
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
    finally:
        os.close(fd)


def preload_agent_stack() -> None:
    """Import the agent modules in the background so the first bind does not wait on them."""
    try:
        importlib.import_module("jupyter_convo.runtime.session")
    except Exception:
        log.exception("preloading the agent modules failed (the first bind will retry)")


def preload_llm_sdk() -> None:
    """Import the LLM SDK after the agent modules, without holding up the bind: a
    conversation is READY before its first LLM call, which imports it if this has not."""
    try:
        importlib.import_module("openai")
    except Exception:
        log.exception("preloading the openai SDK failed (the first LLM call will retry)")


async def _after(first: asyncio.Future[None], then: Callable[[], None]) -> None:
    await first
    await asyncio.get_running_loop().run_in_executor(None, then)


async def serve(args: argparse.Namespace, secrets: SecretRegistry) -> int:
    # Imported here so that ``--help`` and key errors answer fast.
    import tornado.httpserver
    import tornado.netutil

    from .app import RuntimeState, make_app
    from .auth import SessionKey

    state = RuntimeState(
        settings=RuntimeSettings(
            conversations_root=args.conversations_root.resolve(),
            max_upload_bytes=args.max_upload_bytes,
        ),
        session_key=SessionKey.from_environ(),
        secrets=secrets,
    )
    state.settings.conversations_root.mkdir(parents=True, exist_ok=True)
    stopped = asyncio.Event()
    state.on_stopped = stopped.set
    server = tornado.httpserver.HTTPServer(
        make_app(state), max_body_size=DEFAULT_MAX_JSON_BODY_BYTES
    )
    sockets = tornado.netutil.bind_sockets(args.port, args.host)
    server.add_sockets(sockets)
    port = int(sockets[0].getsockname()[1])

    shutdown_task: asyncio.Task[None] | None = None

    async def shutdown(signame: str) -> None:
        log.info("%s received: stopping", signame)
        session = state.session
        if session is not None:
            await session.stop()
        stopped.set()

    def on_signal(signame: str) -> None:
        nonlocal shutdown_task
        if shutdown_task is None:
            shutdown_task = asyncio.create_task(shutdown(signame))

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signal.Signals(signum).name)

    info = {"port": port, "pid": os.getpid()}
    if args.ready_file is not None:
        write_ready_file(args.ready_file, info)
    announce_ready(info)
    log.info("runtime listening on %s:%s (pid %s)", args.host, port, os.getpid())
    if args.log_file is not None:
        redirect_std_streams(args.log_file)
    state.preload = loop.run_in_executor(None, preload_agent_stack)
    sdk_preload = asyncio.ensure_future(_after(state.preload, preload_llm_sdk))

    await stopped.wait()
    server.stop()
    await server.close_all_connections()
    await state.preload
    await sdk_preload
    log.info("runtime exits")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from .auth import SESSION_KEY_ENV, SessionKey, SessionKeyError

    args = parse_args(argv)
    try:
        SessionKey.from_environ()
    except SessionKeyError as exc:
        print(f"jupyter_convo.runtime: {exc}", file=sys.stderr)
        return EXIT_USAGE
    secrets = SecretRegistry()
    secrets.add_from_environ()
    secrets.add(os.environ[SESSION_KEY_ENV])
    configure_logging(args.log_file, args.log_level, secrets)
    try:
        return asyncio.run(serve(args, secrets))
    except OSError as exc:
        log.exception("runtime could not start")
        print(f"jupyter_convo.runtime: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
