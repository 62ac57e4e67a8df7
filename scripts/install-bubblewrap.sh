#!/usr/bin/env bash
# bubblewrap (bwrap), which jails the agent's tools in the process sandbox; the tests of
# that jail (tests/integration/test_confinement.py) fail without it. Installed only when
# missing (safe to run again), then checked: a jail must actually start here (user
# namespaces allowed).
set -euo pipefail

if ! command -v bwrap >/dev/null 2>&1; then
    echo "installing bubblewrap (apt)"
    SUDO=""
    if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq bubblewrap >/dev/null
fi

if ! bwrap --ro-bind / / --dev /dev --proc /proc --unshare-pid --unshare-net \
    --die-with-parent --new-session --cap-drop ALL true; then
    echo "bubblewrap is installed but cannot create its namespaces here (user namespaces" >&2
    echo "disabled? e.g. sysctl kernel.unprivileged_userns_clone=1, or run the tests as root)" >&2
    exit 1
fi
bwrap --version
