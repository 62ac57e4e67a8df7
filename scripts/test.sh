#!/usr/bin/env bash
# The project's one test command (the README shows it; .ci/run calls it).
# On a fresh machine it installs everything the tests need, then runs every tier:
# lint and types, unit, integration (real runtimes, kernels, shells), server (pytest-jupyter).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
echo "== install"
"$PYTHON" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore -e ".[dev]"

echo "== lint and types"
"$PYTHON" -m ruff check .
"$PYTHON" -m ruff format --check .
"$PYTHON" -m mypy

echo "== tests"
mkdir -p test-output
"$PYTHON" -m pytest -p no:cacheprovider -q "$@" tests
