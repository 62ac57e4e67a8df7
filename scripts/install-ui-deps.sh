#!/usr/bin/env bash
# What the browser tests need, installed only when missing (safe to run again):
# Debian's Chromium (Playwright drives it; never `playwright install`, which downloads a
# browser) and the playwright Python package.
set -euo pipefail

PYTHON=${PYTHON:-python3}
CHROMIUM=${CONVO_CHROMIUM:-/usr/bin/chromium}

if [ ! -x "$CHROMIUM" ]; then
    echo "installing chromium (apt)"
    SUDO=""
    if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq chromium >/dev/null
fi

if ! "$PYTHON" -c "import playwright" 2>/dev/null; then
    echo "installing playwright (pip)"
    "$PYTHON" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore playwright
fi

"$CHROMIUM" --version
