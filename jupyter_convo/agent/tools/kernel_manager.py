"""The kernel manager the python tool starts its kernels with.

``jupyter_client``'s own, except that the kernel command goes through
``jupyter_convo.spawn``: the kernel starts with default signal handling even when this
process inherited ignored signals (a runtime or server started in the background). The
launcher runs outside any jail: ``confine_command`` wraps the kernel command first.
Imported only when the first kernel starts (``jupyter_client`` and ``zmq`` are heavy).
"""

from __future__ import annotations

from collections.abc import Mapping

from jupyter_client.manager import AsyncKernelManager

from ...spawn import with_default_signals


class DefaultSignalsKernelManager(AsyncKernelManager):
    """An ``AsyncKernelManager`` whose kernels start with default signal dispositions."""

    def confine_command(self, argv: list[str]) -> list[str]:
        """The kernel command as it is run (a jail wraps it here); default: unchanged."""
        return argv

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        command = self.confine_command(super().format_kernel_cmd(extra_arguments))
        launch = self._launch_args if isinstance(self._launch_args, dict) else {}
        env = launch.get("env")
        return with_default_signals(command, env if isinstance(env, Mapping) else None)
