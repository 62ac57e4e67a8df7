#!/usr/bin/env bash
# The main job: install jupyter-convo with JupyterLab, then open the quickstart notebook.
# Extra arguments go to `jupyter lab` (for example --port 8899 or --no-browser).
#
# With no LLM configured (JUPYTER_CONVO_LLM_BASE_URL, JUPYTER_CONVO_LLM_API_KEY or
# OPENAI_API_KEY), a demo LLM serves the example notebooks' hand-written answers on
# 127.0.0.1, so everything runs on a fresh machine; it stops when JupyterLab stops.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
"$PYTHON" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore -e ".[lab]"

if [[ -z "${JUPYTER_CONVO_LLM_BASE_URL:-}${JUPYTER_CONVO_LLM_API_KEY:-}${OPENAI_API_KEY:-}" ]]; then
  scripts=()
  for file in notebooks/demo_llm/*.json; do scripts+=(--script "$file"); done
  # The demo server prints its base URL once it listens: block on that line, not on time.
  exec {demo_fd}< <("$PYTHON" -m jupyter_convo.testing "${scripts[@]}" --log-level WARNING; echo)
  demo_pid=$!
  trap 'kill "$demo_pid" 2>/dev/null || true' EXIT
  read -r base_url <&"$demo_fd"
  if [[ -z "$base_url" ]]; then
    echo "the demo LLM did not start" >&2
    exit 1
  fi
  export JUPYTER_CONVO_LLM_BASE_URL=$base_url
  export JUPYTER_CONVO_LLM_MODEL=${JUPYTER_CONVO_LLM_MODEL:-scripted-model}
  echo "No LLM configured: the example notebooks use the demo LLM at $base_url"
  echo "(set JUPYTER_CONVO_LLM_MODEL / _API_KEY / _BASE_URL for a real provider)."
fi

args=()
if [[ "$(id -u)" == 0 ]]; then
  args+=(--allow-root)
fi
"$PYTHON" -m jupyterlab "${args[@]}" notebooks/quickstart.ipynb "$@"
