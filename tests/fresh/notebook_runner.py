"""Execute notebooks with nbclient in THIS interpreter's environment.

The fresh tier runs it with the new virtual environment's Python, so the notebooks' kernel
has only what ``scripts/lab.sh`` installed (nbclient comes with JupyterLab). The kernel
finds the server as a JupyterLab kernel does: among the running servers of
``JUPYTER_RUNTIME_DIR``. Usage: ``python notebook_runner.py NOTEBOOK OUTPUT [NOTEBOOK
OUTPUT ...]``; exits 1 with the failing cell and its traceback on stderr.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

CELL_TIMEOUT = 300


def main(argv: list[str]) -> int:
    pairs = list(zip(argv[::2], argv[1::2], strict=True))
    for source, output in pairs:
        path = Path(source)
        notebook = nbformat.read(path, as_version=4)
        client = NotebookClient(
            notebook,
            kernel_name="python3",
            timeout=CELL_TIMEOUT,
            resources={"metadata": {"path": str(path.parent)}},
        )
        try:
            client.execute()
        except CellExecutionError as exc:
            print(f"{path.name} failed:\n{exc}", file=sys.stderr)
            return 1
        finally:
            nbformat.write(notebook, output)
        print(f"executed {path.name}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
