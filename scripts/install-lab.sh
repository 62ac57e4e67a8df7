#!/usr/bin/env bash
# What the main job (scripts/lab.sh) installs, and nothing else: jupyter-convo from this
# checkout with its `lab` extra (JupyterLab, anywidget, and pandas and matplotlib, which the
# example notebooks and Conversation.to_dataframe() use), into the environment of $PYTHON.
# tests/fresh runs lab.sh, and so this very script, into a new virtual environment: what
# lab.sh installs is what the fresh-machine test installs.
#
# From a checkout the install builds the JupyterLab side panel (labextension/), which needs
# Node.js (18 or newer) on PATH; a wheel from PyPI ships it built and needs no Node.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
PIP=("$PYTHON" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore)
# The build requirements (pyproject.toml's [build-system]) go into the environment itself,
# and the project is installed without build isolation: an isolated build would install
# JupyterLab a second time, into a throwaway environment, on every run.
"${PIP[@]}" "hatchling>=1.21" "hatch-jupyter-builder>=0.5" "jupyterlab>=4,<5" editables
"${PIP[@]}" --no-build-isolation -e ".[lab]"
