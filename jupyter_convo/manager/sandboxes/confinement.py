"""``c.Confinement.*``: how the process sandbox jails the agent's tool processes.

The process sandbox's runtimes run as the user, next to the server; what keeps an agent
inside its workspace is the bubblewrap jail every tool process starts in
(``jupyter_convo.agent.confine``). This configurable holds the operator's policy, checks
once that bubblewrap works here (warning loudly when it does not) and gives each
conversation its ``ConfinementSpec``.
"""

from __future__ import annotations

import os
from pathlib import Path

from jupyter_core.paths import jupyter_runtime_dir
from traitlets import Bool, List, Unicode, observe
from traitlets.config import LoggingConfigurable

from ...agent.confine import (
    DEFAULT_HIDDEN_ENVIRONMENT,
    DEFAULT_HIDDEN_PATHS,
    DEFAULT_SYSTEM_PATHS,
    ConfinementSpec,
    probe,
)

INSTALL_HINT = (
    "install bubblewrap (Debian/Ubuntu: apt install bubblewrap; Fedora: dnf install "
    "bubblewrap) and make sure user namespaces are allowed"
)


class Confinement(LoggingConfigurable):
    """The process sandbox's jail for the agent's commands, Python and (later) MCP servers
    and ACP agents: bubblewrap, with the system read-only, the workspace writable and the
    data dir hidden. ``--kernel`` conversations run their Python in the notebook's own
    kernel, which is never confined."""

    enabled = Bool(
        True,
        config=True,
        help=(
            "Run the agent's tool processes in a bubblewrap jail. False runs them as the "
            "user, with every file the user can reach (each conversation then says it is "
            "unconfined). Default: True."
        ),
    )
    required = Bool(
        False,
        config=True,
        help=(
            "Refuse to start a conversation that would run unconfined (bubblewrap missing or "
            "unusable, e.g. no user namespaces or macOS, or enabled = False) instead of "
            "running it with a warning. Default: False."
        ),
    )
    network = Bool(
        True,
        config=True,
        help=(
            "Whether confined tools may use the network. False gives every conversation a "
            "network namespace of its own (loopback only); when True, a conversation can "
            "still turn its own network off. Default: True."
        ),
    )
    bwrap_path = Unicode(
        "bwrap",
        config=True,
        help="The bubblewrap executable (a name looked up on PATH, or a path). Default: bwrap.",
    )
    system_paths = List(
        Unicode(),
        default_value=list(DEFAULT_SYSTEM_PATHS),
        config=True,
        help=(
            "System folders mounted read-only (at the same path) when they exist; symlinks "
            "such as /bin -> usr/bin are recreated. The runtime's Python prefixes and import "
            "paths are added. Default: " + ", ".join(DEFAULT_SYSTEM_PATHS) + "."
        ),
    )
    read_only_paths = List(
        Unicode(),
        config=True,
        help=(
            "Extra folders visible read-only at the same path, e.g. a shared datasets "
            "folder ('~' expands). Default: [] (none)."
        ),
    )
    read_write_paths = List(
        Unicode(),
        config=True,
        help="Extra folders visible and writable at the same path. Default: [] (none).",
    )
    hidden_paths = List(
        Unicode(),
        default_value=list(DEFAULT_HIDDEN_PATHS),
        config=True,
        help=(
            "Paths masked (empty) wherever a mount would show them; glob patterns and '~' "
            "work. The data dir and the Jupyter runtime dir are always hidden. Default: "
            + ", ".join(DEFAULT_HIDDEN_PATHS)
            + "."
        ),
    )
    hidden_environment = List(
        Unicode(),
        default_value=list(DEFAULT_HIDDEN_ENVIRONMENT),
        config=True,
        help=(
            "Environment variables (fnmatch patterns) the agent's tools never inherit from "
            "the server; hand the agent a credential as a named secret instead. Default: "
            + ", ".join(DEFAULT_HIDDEN_ENVIRONMENT)
            + "."
        ),
    )

    _checked: tuple[str | None, str] | None = None

    @observe("enabled", "bwrap_path")
    def _check_again(self, change: object) -> None:
        self._checked = None

    def check(self) -> tuple[str | None, str]:
        """(bwrap's path, "") when the jail works here, else (None, why not); once."""
        if self._checked is None:
            if not self.enabled:
                self._checked = (None, "confinement is disabled (c.Confinement.enabled = False)")
            else:
                self._checked = probe(self.bwrap_path)
        return self._checked

    @property
    def usable(self) -> bool:
        return self.check()[0] is not None

    def announce(self) -> None:
        """Log what the sandbox does: an info line, or a warning (an error when
        ``required``) saying the agent's tools will not be confined, and why."""
        path, reason = self.check()
        if path is not None:
            network = "on" if self.network else "off"
            self.log.info(
                "jupyter-convo: agent tools run confined by bubblewrap (%s), network %s",
                path,
                network,
            )
        elif self.required:
            self.log.error(
                "jupyter-convo: %s; c.Confinement.required is set, so no conversation will "
                "start in the process sandbox: %s",
                reason,
                INSTALL_HINT,
            )
        else:
            self.log.warning(
                "jupyter-convo: %s. Conversations in the process sandbox run UNCONFINED: the "
                "agent's commands and Python run as this user, with access to all their "
                "files. To fix it, %s; set c.Confinement.required = True to refuse "
                "unconfined conversations.",
                reason,
                INSTALL_HINT,
            )

    def refusal(self) -> str | None:
        """Why a conversation may not start (``required`` and no jail), else None."""
        path, reason = self.check()
        if path is None and self.required:
            return (
                f"the agent's tools cannot be confined ({reason}) and the server requires "
                f"it (c.Confinement.required): {INSTALL_HINT}"
            )
        return None

    def spec(self, data_dir: Path) -> ConfinementSpec:
        """The policy for a conversation whose data lives under ``data_dir``."""
        path, reason = self.check()
        hidden = [
            os.path.abspath(data_dir),
            os.path.abspath(jupyter_runtime_dir()),
            *self.hidden_paths,
        ]
        return ConfinementSpec(
            mechanism="bubblewrap" if path is not None else "none",
            reason=reason,
            bwrap=path or self.bwrap_path,
            network=self.network,
            system_paths=list(self.system_paths),
            read_only_paths=list(self.read_only_paths),
            read_write_paths=list(self.read_write_paths),
            hidden_paths=hidden,
            hidden_environment=list(self.hidden_environment),
        )
