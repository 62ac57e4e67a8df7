"""Confined spawning: every process the runtime starts for the agent runs in a bubblewrap jail.

The runtime itself is our trusted code (it writes the conversation's log, cassette and
runtime log) and stays outside. The processes it starts for the agent (the terminal's
shell and the Python kernel now; MCP stdio servers and ACP agents later) go through
``Confiner.command``, which wraps their argv in ``bwrap``:

- the system read-only (``system_paths``, the runtime's Python prefixes and import paths),
  extra read-only and read-write paths the operator configured;
- the conversation's workspace read-write, at the path the user sees it;
- a private HOME (``<conversation>/home``) and ``/tmp`` (``<conversation>/tmp``), shared
  by the shell and the kernel and kept across restarts;
- ``hidden_paths`` (the data dir with every secret and every other conversation, the
  Jupyter runtime dir with servers' tokens and kernels' keys, credential folders) masked
  wherever a mount would show them;
- its own pid namespace and ``/proc`` (no other process, its environment included, is
  visible), no capabilities, no new privileges (bwrap always sets it), a new session,
  and with ``network`` off its own network namespace (loopback only).

The sandbox decides the policy (``ConfinementSpec``, part of the bind request); this module
turns it into one conversation's mount plan and argv lists. Paths are the same inside and
outside, except ``/tmp``.

Start jailed processes from a thread that lives as long as they should (the runtime's
event loop): ``--die-with-parent`` kills the jail when the thread that started it ends.
"""

from __future__ import annotations

import contextlib
import fnmatch
import glob
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ..events.schema import SandboxEvent, SandboxMount

log = logging.getLogger(__name__)

Mechanism = Literal["bubblewrap", "container", "none"]
NetworkOffBy = Literal["server", "conversation"]

DEFAULT_SYSTEM_PATHS = (
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/etc",
    "/opt",
)
# Credentials that may sit under a mounted folder (a workspace that is the whole HOME, say).
DEFAULT_HIDDEN_PATHS = (
    "~/.ssh",
    "~/.gnupg",
    "~/.aws",
    "~/.azure",
    "~/.config/gcloud",
    "~/.kube",
    "~/.docker",
    "~/.netrc",
    "~/.git-credentials",
    "~/.pypirc",
    "/etc/shadow",
    "/etc/shadow-",
    "/etc/gshadow",
    "/etc/gshadow-",
    "/etc/ssl/private",
    "/etc/ssh/ssh_host_*_key",
)
# The server's and the hub's tokens (with them an agent could act as the user through
# Jupyter's API) and the operator's LLM keys (the runtime gets its key another way).
DEFAULT_HIDDEN_ENVIRONMENT = (
    "JUPYTER_TOKEN",
    "JUPYTERHUB_*",
    "JPY_API_TOKEN",
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "AZURE_OPENAI_API_KEY",
)
HOME_DIR = "home"
TMP_DIR = "tmp"
SANDBOX_TMP = "/tmp"
PROBE_TIMEOUT = 10.0
# Variables that point into the real HOME or at the user's session: inside, they would name
# paths that are not there (or sockets we do not want reached).
CONFINED_UNSET = (
    "XDG_RUNTIME_DIR",
    "XDG_CONFIG_HOME",
    "XDG_CACHE_HOME",
    "XDG_DATA_HOME",
    "XDG_STATE_HOME",
    "DBUS_SESSION_BUS_ADDRESS",
    "SSH_AUTH_SOCK",
    "JUPYTER_RUNTIME_DIR",
    "JUPYTER_DATA_DIR",
    "JUPYTER_CONFIG_DIR",
    "IPYTHONDIR",
    "MPLCONFIGDIR",
    "OLDPWD",
)


class ConfinementSpec(BaseModel):
    """How a conversation's tool processes are isolated: the sandbox's policy.

    ``mechanism``: ``bubblewrap`` (wrap every tool process), ``container`` (the runtime
    already runs in one: tools run as they are) or ``none`` (unconfined; ``reason`` says
    why). Paths are absolute; ``hidden_paths`` may hold glob patterns.
    """

    model_config = ConfigDict(extra="forbid")

    mechanism: Mechanism = "none"
    reason: str = ""
    bwrap: str = "bwrap"
    # The server's policy; a conversation may only turn its network off.
    network: bool = True
    system_paths: list[str] = Field(default_factory=lambda: list(DEFAULT_SYSTEM_PATHS))
    read_only_paths: list[str] = Field(default_factory=list)
    read_write_paths: list[str] = Field(default_factory=list)
    hidden_paths: list[str] = Field(default_factory=list)
    # Names (fnmatch patterns) of environment variables the tools never get.
    hidden_environment: list[str] = Field(default_factory=list)


def probe(bwrap: str, *, timeout: float = PROBE_TIMEOUT) -> tuple[str | None, str]:
    """Whether bubblewrap works here: (its absolute path, "") or (None, why not).

    Runs one jail with the namespaces and options ``Confiner`` uses, network cut included,
    so a machine without user namespaces (or a container without the privilege) says so
    now rather than on the agent's first command.
    """
    path = shutil.which(bwrap)
    if path is None:
        where = "on macOS" if sys.platform == "darwin" else "here"
        return None, f"bubblewrap ({bwrap!r}) is not installed {where}"
    argv = [
        path,
        *_BASE_OPTIONS,
        "--unshare-net",
        "--ro-bind",
        "/",
        "/",
        "--dev",
        "/dev",
        "--proc",
        "/proc",
        "--",
        "true",
    ]
    try:
        result = subprocess.run(
            argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"bubblewrap ({path}) could not run: {exc}"
    if result.returncode != 0:
        detail = result.stderr.decode("utf-8", "replace").strip() or f"exit {result.returncode}"
        return None, f"bubblewrap ({path}) cannot create its namespaces here: {detail}"
    return path, ""


def default_spec(hidden: Sequence[str] = ()) -> ConfinementSpec:
    """The default policy where no server configured one (a local replay): bubblewrap
    when it works here (else unconfined, with the reason), ``hidden`` plus the defaults."""
    path, reason = probe("bwrap")
    return ConfinementSpec(
        mechanism="bubblewrap" if path is not None else "none",
        reason=reason,
        bwrap=path or "bwrap",
        hidden_paths=[*hidden, *DEFAULT_HIDDEN_PATHS],
        hidden_environment=list(DEFAULT_HIDDEN_ENVIRONMENT),
    )


_BASE_OPTIONS = (
    "--die-with-parent",
    "--new-session",
    "--unshare-pid",
    "--unshare-ipc",
    "--unshare-uts",
    "--unshare-cgroup-try",
    "--cap-drop",
    "ALL",
    # A pid from outside means nothing in the jail's pid namespace: ipykernel would take
    # its parent (the jail's init, pid 1) for gone and exit. --die-with-parent does the job.
    "--unsetenv",
    "JPY_PARENT_PID",
)


# Runs in the jail with the runtime's own Python (mounted read-only): a new session, then
# the command. (bwrap --as-pid-1 would make the command the session leader too, but as the
# namespace's pid 1 a shell could not be killed from inside: `kill -9 $$` would do nothing.)
# Python ignores SIGPIPE and SIGXFSZ at start and ignored signals survive exec: set them
# back, or every command in the shell would see writes to a closed pipe fail noisily.
_SETSID = (
    "import os, signal, sys; os.setsid(); "
    "[signal.signal(s, signal.SIG_DFL) for s in (signal.SIGPIPE, signal.SIGXFSZ)]; "
    "os.execvp(sys.argv[1], sys.argv[1:])"
)


@dataclass(frozen=True)
class _Step:
    """One bwrap mount operation and how it shows in the sandbox event."""

    args: tuple[str, ...]
    mount: SandboxMount | None = None


def _under(path: Path, root: Path) -> bool:
    """``path`` is ``root`` or inside it (both absolute and normalized). Compared as text:
    ``root in path.parents`` built a Path per parent and was most of a bind
    (bench/bench_start.py, profiled)."""
    inner, outer = str(path), str(root)
    return inner == outer or inner.startswith(outer.rstrip("/") + "/")


def _absolute(paths: Iterable[str]) -> list[Path]:
    return [Path(os.path.abspath(os.path.expanduser(p))) for p in paths if p]


def python_paths(*, hidden: Sequence[Path] = (), private: Sequence[Path] = ()) -> list[Path]:
    """The runtime interpreter's prefixes and import paths (the kernel runs this Python).

    Left out: relative entries (the current directory), anything inside a ``hidden`` path
    and anything holding a ``hidden`` or ``private`` one (a ``PYTHONPATH`` of ``$HOME``
    must not expose it; a prefix inside HOME, like pyenv's, is fine).
    """
    candidates = [sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix, *sys.path]
    found: list[Path] = []
    for raw in candidates:
        if not raw or not os.path.isabs(raw) or not os.path.exists(raw):
            continue
        path = Path(os.path.normpath(raw))
        inside = any(_under(path, h) for h in hidden)
        holds = any(_under(h, path) for h in (*hidden, *private))
        if inside or holds:
            log.info("not mounting Python path %s in the sandbox: it holds or is hidden", path)
            continue
        if path not in found:
            found.append(path)
    return _outermost(found)


def _outermost(paths: Sequence[Path]) -> list[Path]:
    """``paths`` without those inside another one of them (order kept)."""
    return [p for p in paths if not any(o != p and _under(p, o) for o in paths)]


class Confiner:
    """One conversation's jail: its mount plan, its tools' environment and argv lists."""

    def __init__(
        self,
        spec: ConfinementSpec | None,
        *,
        workspace: Path,
        directory: Path,
        network: bool = True,
    ) -> None:
        if spec is None:
            spec = ConfinementSpec(reason="the runtime was given no confinement policy")
        self.spec = spec
        self.confined = spec.mechanism == "bubblewrap"
        # Only the jail can cut the network; elsewhere a request to is reported, not kept.
        self.network_refused = not network and not self.confined
        self.network = not self.confined or (spec.network and network)
        self.network_off_by: NetworkOffBy | None = None
        if self.confined and not spec.network:
            self.network_off_by = "server"
        elif self.confined and not network:
            self.network_off_by = "conversation"
        self.workspace = workspace
        self.directory = directory
        self.home = directory / HOME_DIR
        self.tmp = directory / TMP_DIR
        self._steps: list[_Step] = []
        self._masks: list[Path] = []
        self._hidden: list[Path] = []
        self._visible: list[Path] = []
        if self.confined:
            for folder in (self.home, self.tmp):
                folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._plan()

    # --- the plan -----------------------------------------------------------------------

    def _hidden_paths(self) -> list[Path]:
        hidden: list[Path] = []
        for pattern in self.spec.hidden_paths:
            expanded = os.path.expanduser(pattern)
            matches = glob.glob(expanded) if glob.has_magic(expanded) else [expanded]
            # A link is masked where it leads (the link itself then leads nowhere).
            hidden += [Path(os.path.realpath(m)) for m in matches if os.path.exists(m)]
        return list(dict.fromkeys(hidden))

    def _plan(self) -> None:
        hidden = self._hidden = self._hidden_paths()
        visible = self._visible
        steps = self._steps

        def bind(path: Path, mode: Literal["ro", "rw"], source: Path | None = None) -> None:
            flag = "--ro-bind" if mode == "ro" else "--bind"
            src = source or path
            steps.append(
                _Step(
                    (flag, str(src), str(path)),
                    SandboxMount(path=str(path), mode=mode, source=str(src) if source else None),
                )
            )
            if source is None:  # shows the host's files at ``path``
                visible.append(path)

        steps.append(_Step(("--dev", "/dev")))
        steps.append(_Step(("--proc", "/proc")))
        # First: the workspace or the conversation's folder may lie under the host's /tmp
        # (they are then mounted on top of the private one).
        bind(Path(SANDBOX_TMP), "rw", source=self.tmp)
        for path in _absolute(self.spec.system_paths):
            if path.is_symlink():
                target = os.readlink(path)
                steps.append(
                    _Step(
                        ("--symlink", target, str(path)),
                        SandboxMount(path=str(path), mode="link", source=target),
                    )
                )
            elif path.exists():
                bind(path, "ro")
        for path in _resolv_conf_dirs(visible):
            bind(path, "ro")
        # The real HOME and the hidden paths never come in through an import path.
        home = Path(os.path.expanduser("~"))
        python = python_paths(hidden=[*hidden, self.directory], private=[home])
        for path in python:
            if not any(_under(path, v) for v in visible):
                bind(path, "ro")
        for mode, paths in (("ro", self.spec.read_only_paths), ("rw", self.spec.read_write_paths)):
            for path in _absolute(paths):
                if path.exists():
                    bind(path, "ro" if mode == "ro" else "rw")
                else:
                    log.warning("sandbox: configured path %s does not exist; not mounted", path)
        workspace_hidden = any(_under(self.workspace, h) for h in hidden)
        if not workspace_hidden:
            bind(self.workspace, "rw")
        self._masks = [h for h in hidden if any(_under(h, v) for v in visible)]
        for path in self._masks:
            mount = SandboxMount(path=str(path), mode="hidden")
            if path.is_dir() and not path.is_symlink():
                steps.append(_Step(("--tmpfs", str(path)), mount))
            else:
                steps.append(_Step(("--ro-bind", "/dev/null", str(path)), mount))
        if workspace_hidden:
            bind(self.workspace, "rw")
        bind(self.home, "rw")
        for path in self._masks:
            if path.is_dir() and not path.is_symlink():
                steps.append(_Step(("--remount-ro", str(path))))

    # --- what tools use -----------------------------------------------------------------

    def environment(self, env: Mapping[str, str]) -> dict[str, str]:
        """The inherited environment ``env`` for a tool process: hidden variables dropped;
        inside the jail, HOME and TMPDIR are the private ones. (The user's named secrets
        are added after this.)"""
        patterns = self.spec.hidden_environment
        result = {
            name: value
            for name, value in env.items()
            if not any(fnmatch.fnmatchcase(name, p) for p in patterns)
        }
        if self.confined:
            for name in CONFINED_UNSET:
                result.pop(name, None)
            result["HOME"] = str(self.home)
            result["TMPDIR"] = SANDBOX_TMP
        return result

    def command(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        read_only: Sequence[Path] = (),
        read_write: Sequence[Path] = (),
        session_leader: bool = False,
    ) -> list[str]:
        """``argv`` as the jail runs it (unchanged when not confined), started in ``cwd``.

        ``read_only``/``read_write``: the tool's own private folders (its scripts, its
        sockets), mounted at the same path. ``session_leader``: the command starts a
        session of its own inside the jail (bwrap's init leads the jail's session), so an
        interactive shell can take the terminal it opens as its controlling terminal
        (job control, Ctrl-C to the foreground job).
        """
        if not self.confined:
            return list(argv)
        if session_leader:
            argv = [sys.executable, "-I", "-S", "-c", _SETSID, *argv]
        args = [self.spec.bwrap, *_BASE_OPTIONS]
        if not self.network:
            args.append("--unshare-net")
        for step in self._steps:
            args += step.args
        for path in read_only:
            args += ["--ro-bind", str(path), str(path)]
        for path in read_write:
            args += ["--bind", str(path), str(path)]
        # Last: the jail's own root (a tmpfs holding the mount points) becomes read-only, so
        # writing anywhere but the writable mounts fails instead of vanishing into memory.
        if self.workspace != Path("/"):
            args += ["--remount-ro", "/"]
        args += ["--chdir", str(cwd), "--", *argv]
        return args

    def interpreter_paths(self, executable: str) -> list[Path]:
        """What to mount read-only so ``executable`` runs inside: the prefix of an
        interpreter a kernel spec names (a conda env, say) when the jail does not show it
        already; nothing that holds the real HOME or a hidden path."""
        if not self.confined or not os.path.isabs(executable):
            return []
        real = Path(os.path.realpath(executable))
        paths = [Path(executable).parent.parent, real.parent.parent]
        home = Path(os.path.expanduser("~"))
        wanted = []
        for path in dict.fromkeys(paths):
            if any(_under(path, v) for v in self._visible) or not path.is_dir():
                continue
            if any(_under(h, path) for h in (*self._hidden, home, self.directory)):
                log.warning("sandbox: not mounting %s for %s: it holds private files", path, real)
                continue
            if any(_under(path, h) for h in self._hidden):
                continue
            wanted.append(path)
        return wanted

    def private_dir(self, prefix: str) -> Path:
        """A new folder (mode 0700) for a tool's own files, outside the workspace."""
        return Path(tempfile.mkdtemp(prefix=prefix))

    def release(self, path: Path) -> None:
        """Remove a ``private_dir`` and the empty mount point a jail left for it in the
        conversation's private /tmp."""
        shutil.rmtree(path, ignore_errors=True)
        if self.confined and _under(path, Path(SANDBOX_TMP)) and path != Path(SANDBOX_TMP):
            mountpoint = self.tmp / path.relative_to(SANDBOX_TMP)
            with contextlib.suppress(OSError):
                mountpoint.rmdir()

    # --- what the conversation shows ----------------------------------------------------

    def event(self) -> SandboxEvent:
        """The ``sandbox`` event: how this run's tools are isolated."""
        mounts = [step.mount for step in self._steps if step.mount is not None]
        return SandboxEvent(
            mechanism=self.spec.mechanism,
            confined=self.spec.mechanism != "none",
            network=self.network,
            network_off_by=self.network_off_by,
            home=str(self.home) if self.confined else None,
            mounts=mounts,
            message=self.message(),
        )

    def instructions(self) -> str:
        """What the agent should know of its jail ('' when not jailed)."""
        if not self.confined:
            return ""
        text = (
            "Your terminal and Python run in a sandbox: the workspace, your home directory "
            f"(~ is {self.home}) and /tmp are writable, the system is read-only, and the "
            "user's other files are not there. Keep your work in the workspace."
        )
        if not self.network:
            text += (
                " The network is off: downloads and `pip install` from an index fail. Use "
                "what is installed, or tell the user what you would need."
            )
        return text

    def message(self) -> str:
        refused = (
            " The network stays on: only the process sandbox's jail can cut it."
            if self.network_refused
            else ""
        )
        return self._isolation() + refused

    def _isolation(self) -> str:
        if self.spec.mechanism == "bubblewrap":
            net = "on" if self.network else f"off (by the {self.network_off_by})"
            return (
                "The agent's commands and Python run confined (bubblewrap): the workspace "
                f"is writable, the system read-only, the rest hidden; network {net}."
            )
        if self.spec.mechanism == "container":
            return "The agent's commands and Python run inside the runtime's container."
        why = f": {self.spec.reason}" if self.spec.reason else ""
        return (
            "NOT CONFINED: the agent's commands and Python run as you, with access to all "
            f"your files{why}."
        )


def _resolv_conf_dirs(visible: Sequence[Path]) -> list[Path]:
    """Where /etc/resolv.conf points when it is a link out of /etc (systemd-resolved's
    /run/systemd/resolve): without it, names do not resolve inside."""
    link = Path("/etc/resolv.conf")
    if not any(_under(link, v) for v in visible) or not link.is_symlink():
        return []
    target = link.resolve().parent
    if any(_under(target, v) for v in visible) or not target.is_dir():
        return []
    return [target]
