"""Start child processes with default signal handling, whatever this process inherited.

Why: a process started as a background job (``cmd &`` in a non-interactive shell), by
``nohup``, by some service managers and CI runners inherits SIGINT and SIGQUIT (or more)
as *ignored*, and ignored signals survive ``exec``. A shell or kernel started from such a
server ignores Ctrl-C, so a timed-out command can only be killed, never interrupted.
Python itself ignores SIGPIPE and SIGXFSZ, and a blocked signal mask is inherited too.

``with_default_signals(argv, env)`` prefixes a command with a tiny launcher (this Python,
isolated and without ``site``) that sets every signal back to its default action, unblocks
them all, then ``exec``s the command: same pid, same environment, same file descriptors.
Unlike a ``preexec_fn`` it is safe in a threaded parent, and it also works for spawners we
do not control (``jupyter_client`` builds its own ``Popen``). Every process started for an
agent (runtimes, shells, kernels, later ACP agents and MCP servers) goes through it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence

# ``python -I -S -c LAUNCHER LC_CTYPE-WORD command args...``. The launcher's interpreter
# coerces a C locale by setting LC_CTYPE (PEP 538) in the environment the command would
# inherit, so the spawner says what LC_CTYPE was: "=value", or "" for unset.
LAUNCHER = """\
import os, signal, sys
if sys.argv[1]:
    os.environ["LC_CTYPE"] = sys.argv[1][1:]
else:
    os.environ.pop("LC_CTYPE", None)
for number in signal.valid_signals():
    if number not in (signal.SIGKILL, signal.SIGSTOP):
        signal.signal(number, signal.SIG_DFL)
signal.pthread_sigmask(signal.SIG_SETMASK, ())
try:
    os.execvp(sys.argv[2], sys.argv[2:])
except OSError as exc:
    sys.stderr.write(f"cannot run {sys.argv[2]!r}: {exc.strerror or exc}\\n")
    os._exit(127)
"""


def with_default_signals(
    argv: Sequence[str], env: Mapping[str, str] | None = None, *, python: str | None = None
) -> list[str]:
    """``argv`` behind the launcher: it starts with default signal dispositions and an
    empty signal mask. ``env``: the environment the command is given (default: ours).
    ``python``: the interpreter to launch with (default: this one; only its standard
    library is used)."""
    if not argv:
        raise ValueError("with_default_signals needs a command")
    ctype = (os.environ if env is None else env).get("LC_CTYPE")
    word = "" if ctype is None else f"={ctype}"
    return [python or sys.executable, "-I", "-S", "-c", LAUNCHER, word, *argv]
