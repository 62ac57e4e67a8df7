"""Figures for the issue-15 table (``run_all.py``): bench scripts record, the runner prints.

A script calls ``record(key, values, unit)`` for each figure a row of the table needs; when
``run_all.py`` runs it, ``CONVO_BENCH_SUMMARY`` names a JSON-lines file the records are
appended to (without it, ``record`` does nothing). Figures are printed, never asserted.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

SUMMARY_ENV = "CONVO_BENCH_SUMMARY"


def record(key: str, values: Sequence[float], unit: str) -> None:
    """Keep ``values`` (seconds, events/s or bytes, as ``unit`` says) under ``key``."""
    path = os.environ.get(SUMMARY_ENV)
    if not path or not values:
        return
    with open(path, "a", encoding="utf-8") as summary:
        summary.write(json.dumps({"key": key, "values": list(values), "unit": unit}) + "\n")
