#!/usr/bin/env bash
# A Docker Engine API for the docker test tier, without Docker: podman's compatible service.
#
# Idempotent; every step is skipped when its result is already there:
#   1. apt-get install podman runc debootstrap           (when a command is missing)
#   2. /etc/containers/containers.conf: runc, no default ulimits (both needed on this kind of
#      machine: crun fails on hybrid cgroups, default ulimits fail with setrlimit EPERM)
#   3. the API service on $CONVO_PODMAN_SOCKET, started in the background; waits until it
#      answers the API's ping (bounded)
#   4. the base image $CONVO_BASE_IMAGE from a debootstrap'ed Debian (no registry needed)
#   5. the runtime image $CONVO_RUNTIME_IMAGE, by `jupyter convo build-image` (wheels made on
#      the host; nothing inside the build needs the network; unchanged layers come from cache)
#
# Needs root (apt-get, /etc, /run). Prints the DOCKER_HOST to use on its last line:
#   export DOCKER_HOST=$(bash scripts/setup-podman.sh | tail -n1)
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
SOCKET=${CONVO_PODMAN_SOCKET:-/run/podman/podman.sock}
BASE_IMAGE=${CONVO_BASE_IMAGE:-convo-base:bookworm}
RUNTIME_IMAGE=${CONVO_RUNTIME_IMAGE:-jupyter-convo-runtime:test}
SERVICE_LOG=${CONVO_PODMAN_LOG:-/var/log/convo-podman-service.log}
PING_TIMEOUT=${CONVO_PODMAN_PING_TIMEOUT:-60}
CONF=/etc/containers/containers.conf
MARK="# written by jupyter-convo scripts/setup-podman.sh"

say() { echo "setup-podman: $*" >&2; }

# 1. packages ----------------------------------------------------------------------------------
missing=()
for cmd in podman runc debootstrap; do
    command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd")
done
if ((${#missing[@]})); then
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq podman runc debootstrap >&2
fi

# 2. containers.conf ---------------------------------------------------------------------------
if [[ -f $CONF ]] && ! grep -qF "$MARK" "$CONF"; then
    if ! grep -q 'default_ulimits *= *\[\]' "$CONF" || ! grep -q 'runtime *= *"runc"' "$CONF"; then
        say "$CONF exists and was not written by this script; it needs"
        say '  [containers] default_ulimits = []  and  [engine] runtime = "runc"'
        exit 1
    fi
else
    mkdir -p "$(dirname "$CONF")"
    printf '%s\n[containers]\ndefault_ulimits = []\n\n[engine]\nruntime = "runc"\n' "$MARK" >"$CONF"
fi

# 3. the API service -----------------------------------------------------------------------------
export DOCKER_HOST="unix://$SOCKET"
if ! "$PYTHON" -c 'import docker' 2>/dev/null; then
    say "the docker SDK is missing: pip install -e '.[docker]' (scripts/test.sh does) first"
    exit 1
fi
ping() { "$PYTHON" -c 'import docker; docker.from_env(timeout=5).ping()' >/dev/null 2>&1; }
if ! ping; then
    say "starting podman's API service on $SOCKET (log: $SERVICE_LOG)"
    mkdir -p "$(dirname "$SOCKET")"
    # setsid + nohup: the service outlives this script and the CI step that ran it.
    setsid nohup podman system service --time=0 "$DOCKER_HOST" >>"$SERVICE_LOG" 2>&1 </dev/null &
    deadline=$((SECONDS + PING_TIMEOUT))
    until ping; do
        if ((SECONDS >= deadline)); then
            say "the API service did not answer within ${PING_TIMEOUT}s; its log:"
            tail -n 30 "$SERVICE_LOG" >&2 || true
            exit 1
        fi
        sleep 0.2
    done
fi
say "API service answers on $DOCKER_HOST"

# 4. base image ----------------------------------------------------------------------------------
if ! podman image exists "$BASE_IMAGE"; then
    rootfs=$(mktemp -d /var/tmp/convo-rootfs.XXXXXX)
    trap 'rm -rf "$rootfs"' EXIT
    say "building $BASE_IMAGE with debootstrap (about a minute)"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        bookworm "$rootfs" >&2
    tar -C "$rootfs" -c . | podman import - "$BASE_IMAGE" >&2
    rm -rf "$rootfs"
    trap - EXIT
fi
say "base image $BASE_IMAGE is there"

# 5. runtime image (cheap when nothing changed: the dependency layers are cached) ---------------
"$PYTHON" -m jupyter_convo.cli build-image --base "$BASE_IMAGE" --tag "$RUNTIME_IMAGE" >&2
# Earlier runtime images this replaced (untagged now); the build cache stays.
podman image prune -f --filter label=org.jupyter-convo.image=runtime >/dev/null
say "runtime image $RUNTIME_IMAGE is built"

echo "$DOCKER_HOST"
