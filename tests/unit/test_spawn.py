"""The default-signals launcher: what the child gets, and what it keeps."""

from __future__ import annotations

import os
import subprocess

from signal_helpers import SignalState, inherited_signals, signal_state

from jupyter_convo.spawn import with_default_signals

NO_SIGNALS = SignalState(frozenset(), frozenset())


def run(argv: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)


def test_the_child_gets_default_dispositions_and_an_empty_mask() -> None:
    status = ["grep", "^Sig", "/proc/self/status"]
    with inherited_signals():
        inherited = run(status)
        launched = run(with_default_signals(status))
    assert signal_state(inherited.stdout) != NO_SIGNALS  # the reproduction works
    assert signal_state(launched.stdout) == NO_SIGNALS


def test_the_command_keeps_the_pid_environment_and_arguments() -> None:
    env = {"PATH": os.environ["PATH"], "KEPT": "yes"}
    proc = subprocess.Popen(
        with_default_signals(["sh", "-c", 'echo "$$ $KEPT $0 $1"', "zero", "one two"], env),
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    out, _ = proc.communicate(timeout=60)
    assert out == f"{proc.pid} yes zero one two\n"


def test_the_launcher_leaves_lc_ctype_as_it_was() -> None:
    """Its Python would coerce a C locale by setting LC_CTYPE (PEP 538)."""
    bare = {"PATH": os.environ["PATH"]}
    assert "LC_CTYPE" not in run(with_default_signals(["env"], bare), bare).stdout
    c_locale = {**bare, "LC_CTYPE": "C"}
    assert "LC_CTYPE=C\n" in run(with_default_signals(["env"], c_locale), c_locale).stdout


def test_a_missing_command_exits_127_and_says_so() -> None:
    done = run(with_default_signals(["/no/such/command", "x"]))
    assert done.returncode == 127
    assert "cannot run '/no/such/command': No such file or directory" in done.stderr
