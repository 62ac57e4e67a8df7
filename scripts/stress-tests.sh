#!/usr/bin/env bash
# Run the test tiers over and over under the conditions that shake out races: CPU
# contention (a busy loop per core beside the tests) and a background job with SIGINT and
# SIGQUIT ignored and no stdin (as `cmd &` in a non-interactive shell, nohup and some CI
# runners start it). Prints a summary: rounds passed per tier and every failing test id.
#
#   bash scripts/stress-tests.sh [-r ROUNDS] [-t TIERS] [-b BUSY] [--default-signals]
#                                [--round-timeout SECONDS] [-- PYTEST_ARGS...]
#
#   -r, --rounds N        rounds of every tier (default 3)
#   -t, --tiers LIST      comma-separated, in order, from: main (pytest tests, without the
#                         tiers below), reliability, ui, docker (default main,reliability)
#   -b, --busy N          busy loops beside the tests (default: one per core; 0: none)
#   --default-signals     run pytest with default SIGINT/SIGQUIT handling, not as a
#                         background job
#   --round-timeout S     stop a tier's run after S seconds and count it failed (default 3600)
#
# The pytest commands are those of scripts/test.sh. Run scripts/test.sh once first (it
# installs everything; the UI tier needs the built labextension and Chromium, the docker
# tier scripts/setup-podman.sh, which this script runs when asked for that tier). Logs and
# the summary go to test-output/stress/<time>/. Exit status 0 only if every round passed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
ROUNDS=3
TIERS=main,reliability
BUSY=$(nproc 2>/dev/null || echo 2)
BACKGROUND=1
ROUND_TIMEOUT=3600
PYTEST_EXTRA=()

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

while (($#)); do
    case $1 in
        -r | --rounds) ROUNDS=$2; shift 2 ;;
        -t | --tiers) TIERS=$2; shift 2 ;;
        -b | --busy) BUSY=$2; shift 2 ;;
        --default-signals) BACKGROUND=0; shift ;;
        --round-timeout) ROUND_TIMEOUT=$2; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        --) shift; PYTEST_EXTRA=("$@"); break ;;
        *) echo "stress-tests: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
for value in "$ROUNDS" "$BUSY" "$ROUND_TIMEOUT"; do
    [[ $value =~ ^[0-9]+$ ]] || { echo "stress-tests: not a number: $value" >&2; exit 2; }
done
IFS=, read -r -a TIER_LIST <<<"$TIERS"

# The pytest arguments of each tier, as scripts/test.sh runs them.
tier_args() {
    case $1 in
        main) echo "tests --ignore=tests/reliability --ignore=tests/ui" ;;
        reliability) echo "tests/reliability" ;;
        ui) echo "tests/ui" ;;
        docker) echo "tests/docker" ;;
        *) return 1 ;;
    esac
}
for tier in "${TIER_LIST[@]}"; do
    tier_args "$tier" >/dev/null || { echo "stress-tests: unknown tier '$tier'" >&2; exit 2; }
done

OUT=test-output/stress/$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"
SUMMARY=$OUT/summary.txt

# --- what we start, and stop whatever happens --------------------------------------------
BUSY_PIDS=()
JOB_PID=""
WATCHDOG_PID=""

cleanup() {
    local pid
    for pid in "${BUSY_PIDS[@]}" $WATCHDOG_PID; do
        kill -KILL "$pid" 2>/dev/null || true
    done
    if [[ -n $JOB_PID ]] && kill -0 "$JOB_PID" 2>/dev/null; then
        # SIGINT is ignored by the job (that is the point); SIGTERM ends pytest.
        kill -TERM "$JOB_PID" 2>/dev/null || true
        wait "$JOB_PID" 2>/dev/null || true
    fi
    wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'echo "stress-tests: interrupted" >&2; exit 130' INT TERM HUP

for ((i = 0; i < BUSY; i++)); do
    (while :; do :; done) &
    BUSY_PIDS+=($!)
done

if [[ " ${TIER_LIST[*]} " == *" docker "* ]]; then
    DOCKER_HOST=$(bash scripts/setup-podman.sh | tail -n1)
    export DOCKER_HOST
fi

# --- the rounds ----------------------------------------------------------------------------
declare -A PASSED=()
declare -A FAILURES=()  # test id -> "tier round, ..."
FAILED_RUNS=()

run_tier() {
    local tier=$1 round=$2 log=$3 status=0 finished="" args prefix=()
    read -r -a args <<<"$(tier_args "$tier")"
    [[ $tier == docker ]] && prefix=(env JUPYTER_CONVO_TEST_DOCKER=1)
    local command=("${prefix[@]}" "$PYTHON" -m pytest -p no:cacheprovider -q -rfEs
        "${args[@]}" "${PYTEST_EXTRA[@]}")
    echo "== round $round/$ROUNDS, tier $tier: ${command[*]}" | tee -a "$log"
    # Log the signals the job really has, from inside it, then become pytest (same pid).
    command=(bash -c 'echo "   job signals: $(grep -E "^Sig(Ign|Blk)" /proc/self/status | xargs)"
        exec "$@"' stress-job "${command[@]}")
    if ((BACKGROUND)); then
        # A background job of a non-interactive shell: SIGINT and SIGQUIT ignored, stdin
        # from /dev/null, exactly as `cmd &`, nohup and CI runners start it.
        "${command[@]}" >>"$log" 2>&1 &
    else
        set -m # job control: the job keeps default SIGINT/SIGQUIT (in its own group)
        "${command[@]}" >>"$log" 2>&1 </dev/null &
        set +m
    fi
    JOB_PID=$!
    sleep "$ROUND_TIMEOUT" &
    WATCHDOG_PID=$!
    wait -n -p finished "$JOB_PID" "$WATCHDOG_PID" || status=$?
    if [[ $finished == "$WATCHDOG_PID" ]]; then
        echo "== stopped after $ROUND_TIMEOUT s" | tee -a "$log"
        kill -TERM "$JOB_PID" 2>/dev/null || true
        wait "$JOB_PID" 2>/dev/null || true
        status=124
    else
        kill -KILL "$WATCHDOG_PID" 2>/dev/null || true
        wait "$WATCHDOG_PID" 2>/dev/null || true
    fi
    JOB_PID=""
    WATCHDOG_PID=""
    grep -m1 "^   job signals:" "$log" || true
    tail -n 1 "$log" | sed 's/^/   /'
    return "$status"
}

start=$(date +%s)
for ((round = 1; round <= ROUNDS; round++)); do
    for tier in "${TIER_LIST[@]}"; do
        log=$OUT/$tier-round$round.log
        if run_tier "$tier" "$round" "$log"; then
            PASSED[$tier]=$((${PASSED[$tier]:-0} + 1))
        else
            FAILED_RUNS+=("$tier round $round ($log)")
            ids=$(sed -n -E 's/^(FAILED|ERROR) ([^ ]+).*/\2/p' "$log" | sort -u)
            if [[ -z $ids ]]; then
                ids="(no test id: see the log)"
            fi
            while read -r id; do
                FAILURES[$id]="${FAILURES[$id]:+${FAILURES[$id]}, }$tier round $round"
            done <<<"$ids"
        fi
    done
done

{
    echo "== stress summary: $ROUNDS round(s), $BUSY busy loop(s), $(
        ((BACKGROUND)) && echo "background job (SIGINT/SIGQUIT ignored, no stdin)" ||
            echo "default signals")"
    echo "   $(($(date +%s) - start)) s; logs in $OUT"
    for tier in "${TIER_LIST[@]}"; do
        printf '   %-12s %d/%d rounds passed\n' "$tier" "${PASSED[$tier]:-0}" "$ROUNDS"
    done
    if ((${#FAILURES[@]})); then
        echo "   failing tests:"
        for id in "${!FAILURES[@]}"; do
            echo "     $id: ${FAILURES[$id]}"
        done
    fi
} | tee "$SUMMARY"
((${#FAILED_RUNS[@]} == 0))
