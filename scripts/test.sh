#!/usr/bin/env bash
# The project's one test command (the README shows it; .ci/run calls it).
# On a fresh machine it installs everything the tests need, then runs every tier:
# lint and types, unit, integration (real runtimes, kernels, shells), server (pytest-jupyter),
# UI (the side panel in a real JupyterLab and browser), the reliability tier (faults, load,
# hostile input and security against a real `jupyter server` subprocess; ~6 min on 2 cores),
# then the docker tier (real containers through podman's Docker-compatible API; needs root
# on a fresh machine: scripts/setup-podman.sh installs podman and builds the images).
# The UI tier builds the JupyterLab side panel and the notebook widget's front end
# (labextension/), lints them (and fails when src/generated/api.ts drifts from
# docs/openapi.yaml), runs their Jest tests, and tests/ui drives both in Debian's Chromium
# (scripts/install-ui-deps.sh installs what it needs: apt chromium, pip playwright; Node 20
# and npm must exist).
# The install step also installs bubblewrap (apt, scripts/install-bubblewrap.sh): the process
# sandbox's jail.
# CONVO_SKIP_DOCKER=1 leaves the docker tier out, CONVO_SKIP_AGENTS=1 the agents tier (real
# npm ACP agents), CONVO_SKIP_UI=1 the UI tier,
# CONVO_SKIP_RELIABILITY=1 the reliability tier, CONVO_SKIP_FRESH=1 the fresh-machine tier
# (each says so).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
PIP=("$PYTHON" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore)
# jlpm and jupyter (used by the labextension build) from this Python's environment.
PATH="$(dirname "$("$PYTHON" -c 'import sys; print(sys.executable)')"):$PATH"
export PATH

echo "== install"
# Build requirements first, then the editable install without build isolation (an isolated
# build would download JupyterLab on every run). Its jupyter-builder hook builds the
# labextension (jlpm install + build) when labextension/src is newer than the build.
"${PIP[@]}" "hatchling>=1.21" "hatch-jupyter-builder>=0.5" "jupyterlab>=4,<5" editables
"${PIP[@]}" --no-build-isolation -e ".[dev]"
# bubblewrap jails the agent's tools in the process sandbox (its tests need it).
bash scripts/install-bubblewrap.sh

echo "== lint and types"
"$PYTHON" -m ruff check .
"$PYTHON" -m ruff format --check .
"$PYTHON" -m mypy
# Imports only go down the layers (docs/architecture.md, "Layers"; contracts in pyproject.toml).
lint-imports --no-cache

PYTEST_UI=()
if [[ ${CONVO_SKIP_UI:-0} == 1 ]]; then
    echo "== UI tier SKIPPED (CONVO_SKIP_UI=1)"
    PYTEST_UI=(--ignore=tests/ui)
else
    echo "== UI tier: browser, labextension build, lint, Jest"
    bash scripts/install-ui-deps.sh
    (
        cd labextension
        jlpm install
        jlpm build:prod
        jlpm lint:check
        jlpm test
    )
    # Install the fresh build into the environment (the hook skips: it is built).
    "${PIP[@]}" --no-build-isolation --no-deps -e .
fi

echo "== tests"
mkdir -p test-output
"$PYTHON" -m pytest -p no:cacheprovider -q "${PYTEST_UI[@]}" "$@" tests --ignore=tests/reliability \
    --ignore=tests/fresh

if [[ ${CONVO_SKIP_RELIABILITY:-0} == 1 ]]; then
    echo "== reliability tier SKIPPED (CONVO_SKIP_RELIABILITY=1)"
else
    echo "== reliability tier: faults, load, hostile input, security"
    "$PYTHON" -m pytest -p no:cacheprovider -q "$@" tests/reliability
fi

# The agents tier: real ACP agents from npm (OpenCode, Qwen Code) in the jail, behind the
# LLM gateway, against the scripted LLM. scripts/install-agents.sh installs them (~500 MB,
# cached by npm); it exits 3 when npm or its registry is unreachable: the tier then skips.
if [[ ${CONVO_SKIP_AGENTS:-0} == 1 ]]; then
    echo "== agents tier SKIPPED (CONVO_SKIP_AGENTS=1)"
else
    echo "== agents tier: real ACP agents from npm"
    status=0
    bash scripts/install-agents.sh || status=$?
    if [[ $status == 3 ]]; then
        echo "== agents tier SKIPPED: npm or its registry is unreachable (see above)"
    elif [[ $status != 0 ]]; then
        exit "$status"
    else
        CONVO_AGENTS_TIER=1 "$PYTHON" -m pytest -p no:cacheprovider -q "$@" \
            tests/integration/test_real_acp_agents.py
    fi
fi

# The fresh-machine tier: scripts/lab.sh (the main job) run into a new virtual environment
# with only what it installs, every example notebook against it, then Ctrl-C must stop all
# it started (tests/fresh; a few minutes, pip's cache keeps it off the network but PyPI).
if [[ ${CONVO_SKIP_FRESH:-0} == 1 ]]; then
    echo "== fresh-machine tier SKIPPED (CONVO_SKIP_FRESH=1)"
else
    echo "== fresh-machine tier: lab.sh into a new venv, every notebook, Ctrl-C"
    "$PYTHON" -m pytest -p no:cacheprovider -q "$@" tests/fresh
fi

if [[ ${CONVO_SKIP_DOCKER:-0} == 1 ]]; then
    echo "== docker tier SKIPPED (CONVO_SKIP_DOCKER=1)"
else
    echo "== docker tier: podman's Docker API, a runtime image built here (setup-podman.sh)"
    DOCKER_HOST=$(bash scripts/setup-podman.sh | tail -n1)
    export DOCKER_HOST
    JUPYTER_CONVO_TEST_DOCKER=1 "$PYTHON" -m pytest -p no:cacheprovider -q "$@" tests/docker
fi
