#!/usr/bin/env bash
# The main job: install jupyter-convo with JupyterLab, then open the quickstart notebook.
# Extra arguments go to `jupyter lab` (for example --port 8899 or --no-browser).
#
# With no LLM configured (JUPYTER_CONVO_LLM_BASE_URL, JUPYTER_CONVO_LLM_API_KEY or
# OPENAI_API_KEY), a demo LLM serves the example notebooks' hand-written answers on
# 127.0.0.1, so everything runs on a fresh machine.
#
# Ctrl-C (or SIGTERM) stops everything this script started: JupyterLab with its notebook
# kernels, every conversation's runtime with the agent's shells and kernels (this JupyterLab
# runs with ConvoExtension.keep_runtimes_on_shutdown=False: the runtimes go with it, since
# the demo LLM they talk to goes too), then the demo LLM. Conversations stay on disk, and
# the next start resumes any of them on demand.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
export PYTHON
bash scripts/install-lab.sh

demo_pid=
lab_pid=
stopping=
stop_lab() {
  if [[ -z "$lab_pid" ]]; then
    exit 130  # JupyterLab is not started yet: nothing but the demo LLM to stop
  elif [[ -z "$stopping" ]]; then
    stopping=1
    echo "Stopping JupyterLab, its kernels and the conversations' runtimes..." >&2
    kill -TERM "$lab_pid" 2>/dev/null || true
  else
    echo "Still stopping (runtimes get a few seconds to end cleanly)..." >&2
  fi
}
stop_demo() {
  if [[ -n "$demo_pid" ]]; then
    kill -TERM "$demo_pid" 2>/dev/null || true
    wait "$demo_pid" 2>/dev/null || true
  fi
}
trap stop_demo EXIT
trap stop_lab INT TERM HUP

if [[ -z "${JUPYTER_CONVO_LLM_BASE_URL:-}${JUPYTER_CONVO_LLM_API_KEY:-}${OPENAI_API_KEY:-}" ]]; then
  scripts=()
  for file in notebooks/demo_llm/*.json; do scripts+=(--script "$file"); done
  # The demo server prints its base URL once it listens: block on that line, not on time.
  exec {demo_fd}< <(exec "$PYTHON" -m jupyter_convo.testing "${scripts[@]}" --log-level WARNING)
  demo_pid=$!
  read -r base_url <&"$demo_fd" || true
  if [[ -z "${base_url:-}" ]]; then
    echo "the demo LLM did not start" >&2
    exit 1
  fi
  export JUPYTER_CONVO_LLM_BASE_URL=$base_url
  export JUPYTER_CONVO_LLM_MODEL=${JUPYTER_CONVO_LLM_MODEL:-scripted-model}
  echo "No LLM configured: the example notebooks use the demo LLM at $base_url"
  echo "(set JUPYTER_CONVO_LLM_MODEL / _API_KEY / _BASE_URL for a real provider)."
fi

args=(--ConvoExtension.keep_runtimes_on_shutdown=False)
if [[ "$(id -u)" == 0 ]]; then
  args+=(--allow-root)
fi
# JupyterLab runs as a job of its own (set -m: its own process group, default signal
# handling), so that a Ctrl-C reaches this script, which then asks JupyterLab to shut down
# cleanly with SIGTERM; a Ctrl-C straight into JupyterLab would leave its runtimes behind.
set -m
"$PYTHON" -m jupyterlab "${args[@]}" notebooks/quickstart.ipynb "$@" </dev/null &
lab_pid=$!
set +m
status=0
while true; do
  wait "$lab_pid" && status=0 || status=$?
  # wait returns early when a signal was trapped: wait again until JupyterLab has exited.
  kill -0 "$lab_pid" 2>/dev/null || break
done
exit "$status"
