#!/usr/bin/env bash
# The project's one test command (the README shows it; .ci/run calls it).
# On a fresh machine it installs everything the tests need, then runs every tier:
# lint and types, unit, integration (real runtimes, kernels, shells), server (pytest-jupyter),
# then the docker tier (real containers through podman's Docker-compatible API; needs root
# on a fresh machine: scripts/setup-podman.sh installs podman and builds the images).
# CONVO_SKIP_DOCKER=1 leaves the docker tier out (it says so).
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

echo "== docker tier"
if [[ ${CONVO_SKIP_DOCKER:-0} == 1 ]]; then
    echo "docker tier SKIPPED (CONVO_SKIP_DOCKER=1)"
    exit 0
fi
DOCKER_HOST=$(bash scripts/setup-podman.sh | tail -n1)
export DOCKER_HOST
JUPYTER_CONVO_TEST_DOCKER=1 "$PYTHON" -m pytest -p no:cacheprovider -q "$@" tests/docker
