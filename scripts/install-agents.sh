#!/usr/bin/env bash
# Install the real ACP agents the `agents` test tier runs (npm; about 500 MB) into one
# prefix outside any HOME, so the process sandbox's jail shows them read-only:
#   CONVO_AGENTS_PREFIX (default /opt/convo-agents)/node_modules/.bin/{opencode,qwen}
# Exits 3 when npm or its registry is unreachable (the tier then skips, saying so).
set -euo pipefail
PREFIX=${CONVO_AGENTS_PREFIX:-/opt/convo-agents}
if ! command -v npm >/dev/null; then
    echo "install-agents: npm is not installed" >&2
    exit 3
fi
if ! npm view opencode-ai version >/dev/null 2>&1; then
    echo "install-agents: the npm registry is unreachable" >&2
    exit 3
fi
mkdir -p "$PREFIX"
npm install --prefix "$PREFIX" --no-audit --no-fund --loglevel=error \
    "opencode-ai@1.18" "@qwen-code/qwen-code@0.24"
echo "install-agents: installed in $PREFIX"
