"""A Jupyter server without jupyter-convo: ``%convo`` says the extension is not enabled."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from jupyter_process import jupyter_server

from jupyter_convo.client import NO_SERVER_HELP
from jupyter_convo.kernel.magics import load_ipython_extension


def test_server_without_the_extension(
    shell: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with jupyter_server(tmp_path, llm_base_url=None, convo_enabled=False) as server:
        load_ipython_extension(shell)
        shell.run_line_magic("config", f"ConvoMagics.server_url = {server.url!r}")
        shell.run_line_magic("config", f"ConvoMagics.token = {server.token!r}")
        try:
            assert shell.run_cell("%convo list").success
            out, err = capsys.readouterr()
            assert err.startswith(NO_SERVER_HELP)
            assert f"{server.url}: the jupyter-convo server extension is not enabled" in err
            assert "Traceback" not in out + err
        finally:
            shell._convo_magics.close()
