#!/usr/bin/env bash
# The main job: install jupyter-convo with JupyterLab, then open the quickstart notebook.
# Extra arguments go to `jupyter lab` (for example --port 8899 or --no-browser).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
"$PYTHON" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore -e ".[lab]"

args=()
if [ "$(id -u)" = 0 ]; then
  args+=(--allow-root)
fi
exec "$PYTHON" -m jupyterlab "${args[@]}" notebooks/quickstart.ipynb "$@"
