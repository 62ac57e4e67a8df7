"""jupyter-convo: run, watch, steer and share AI agent conversations from Jupyter.

Imports here stay light: ``%load_ext jupyter_convo`` and server start must be fast, so the
heavy modules are imported inside the functions that need them.
"""

from __future__ import annotations

from typing import Any

from ._version import __version__

__all__ = ["__version__"]


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    from .server.app import ConvoExtension

    return [{"module": "jupyter_convo", "app": ConvoExtension}]


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    return [{"src": "labextension", "dest": "jupyter-convo"}]


def load_ipython_extension(ipython: Any) -> None:
    from .kernel.magics import load_ipython_extension as _load

    _load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    from .kernel.magics import unload_ipython_extension as _unload

    _unload(ipython)
