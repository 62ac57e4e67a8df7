"""Reproduce a process started in the background: signals inherited as ignored or blocked.

A job that a non-interactive shell starts with ``&`` (and nohup, some CI runners) gets
SIGINT and SIGQUIT as ignored; ``inherited_signals()`` puts the test process in that state
(and worse) while the code under test spawns its children, then restores it.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

IGNORED = (
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGUSR1,
    signal.SIGPIPE,
)
# Not SIGALRM (pytest-timeout's) nor SIGCHLD (child watchers).
BLOCKED = (signal.SIGUSR2, signal.SIGWINCH)


@contextlib.contextmanager
def inherited_signals() -> Iterator[None]:
    """Ignore ``IGNORED`` and block ``BLOCKED`` in this (main) thread until the end."""
    saved = {number: signal.getsignal(number) for number in IGNORED}
    for number in IGNORED:
        signal.signal(number, signal.SIG_IGN)
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, BLOCKED)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        for number, handler in saved.items():
            signal.signal(number, handler if handler is not None else signal.SIG_DFL)


@dataclass(frozen=True)
class SignalState:
    ignored: frozenset[int]
    blocked: frozenset[int]


def signal_state(status: str) -> SignalState:
    """The ignored and blocked signals in the text of a ``/proc/PID/status`` file."""
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return SignalState(_numbers(fields["SigIgn"]), _numbers(fields["SigBlk"]))


def process_signal_state(pid: int) -> SignalState:
    return signal_state(Path(f"/proc/{pid}/status").read_text())


def _numbers(mask: str) -> frozenset[int]:
    bits = int(mask.strip(), 16)
    return frozenset(n for n in range(1, 65) if bits & (1 << (n - 1)))
