"""Re-record the example runs of this folder (run from the repository root).

    python notebooks/runs/record_examples.py

Each ``<name>.run.json`` is played through the real agent and tools against the scripted
LLM server (its answers are the hand-written ``<name>.script.json``) and written as an
unpacked export to ``<name>/``. Re-record after a change that alters what the tools answer.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
from pathlib import Path

from jupyter_convo.testing.examples import describe, record_example

HERE = Path(__file__).resolve().parent


async def main() -> int:
    for spec in sorted(HERE.glob("*.run.json")):
        name = spec.name.removesuffix(".run.json")
        destination = HERE / name
        with tempfile.TemporaryDirectory(prefix="convo-example-") as tmp:
            if destination.exists():
                shutil.rmtree(destination)
            await record_example(spec, Path(tmp), destination)
        print(describe(destination))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
