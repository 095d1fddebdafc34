#!/usr/bin/env bash
# Palisade's soak (issue 12; docs/benchmarks.md, "Soak"): a release `palisade serve` on its
# embedded default (SQLite in a temp dir, no config file), minutes of mixed load from the load
# generator's `soak` workload (crates/loadgen/src/soak.rs: creates, PATCH diffs, deletes, lists,
# verdicts, agent long-polls, bad inputs, idle and slow connections, paced and bounded in count
# and time), the server's RSS, file descriptors, database size and /metrics size sampled over
# time, then the checks: no 5xx, every task finished, RSS after warm-up flat within 10 %, database
# bounded, /healthz always up, bad inputs refused as they must be, idle and slow connections
# closed. Last, SIGTERM and how long the server takes to exit. Exits non-zero if a check fails.
#
#   scripts/soak.sh [MINUTES]      default 10
#   options: --seconds S           the load's length in seconds instead
#            --short               45 s of lighter load, RSS within 25 % (the CI variant, with --debug)
#            --debug               use target/debug binaries (built if missing) instead of release
#            --skip-build          use the binaries already built
#            --out DIR             where soak.json, the sample table and the server log go
#                                  (default: a temp dir, printed)
#            -- ARGS               more load-generator arguments (e.g. --soak-rate 40)
# Only 127.0.0.1 is loaded. Needs curl and python3 (for a free port).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=600
profile=release
build=1
out=""
short=0
extra=()
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) seconds="$2"; shift 2 ;;
        --short) short=1; seconds=45; shift ;;
        --debug) profile=debug; shift ;;
        --skip-build) build=0; shift ;;
        --out) out="$2"; shift 2 ;;
        --) shift; extra=("$@"); break ;;
        -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
        [0-9]*) seconds=$(( $1 * 60 )); shift ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done

bin="target/$profile/palisade"
loadgen="target/$profile/palisade-loadgen"
if [ "$build" = 1 ]; then
    flag=()
    [ "$profile" = release ] && flag=(--release)
    # Two invocations, as scripts/bench.sh: building them together would unify features into the server.
    cargo build "${flag[@]}" --locked -p palisade
    cargo build "${flag[@]}" --locked -p palisade-loadgen
fi

work="$(mktemp -d /tmp/palisade-soak.XXXXXX)"
out="${out:-$work}"
mkdir -p "$out"
data="$work/data"
server_pid=""
cleanup() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill "$server_pid" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -rf "$data"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

machine() { # what else the machine is doing
    echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); busiest processes:"
    ps -eo pcpu,rss,comm --sort=-pcpu | sed -n '2,6p' | awk '{printf "    %5s%% CPU %6d MB  %s\n", $1, $2/1024, $3}'
}

"$bin" migrate --data-dir "$data" >/dev/null 2>&1
tenant="$("$bin" keys create --data-dir "$data" --name soak | tail -n 1)"
platform="$("$bin" keys create --data-dir "$data" --role platform --name soak-platform | tail -n 1)"
agent="$("$bin" keys create --data-dir "$data" --role agent --host h1 --name soak-agent | tail -n 1)"

port="$(free_port)"
metrics_port="$(free_port)"
serve_args=(serve --listen "127.0.0.1:$port" --no-bootstrap-key)
metrics_args=()
if "$bin" serve --help | grep -q -- '--metrics-listen'; then
    serve_args+=(--metrics-listen "127.0.0.1:$metrics_port")
    metrics_args=(--soak-metrics-url "http://127.0.0.1:$metrics_port/metrics")
fi
RUST_LOG=warn "$bin" "${serve_args[@]}" --data-dir "$data" > "$out/serve.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
    sleep 0.1
done
curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null || { echo "palisade serve did not start" >&2; cat "$out/serve.log" >&2; exit 1; }

load=()
if [ "$short" = 1 ]; then
    # A smoke test: lighter load, and RSS judged from 15 s on within 25 % (a 45-second process is
    # still growing its allocator's arenas; the 10 % check is the long run's).
    load=(--soak-rate 8 --soak-idle 20 --soak-slow 4 --soak-groups 30 --soak-sample-s 3 --soak-wait-s 5
          --soak-warmup-s 15 --soak-rss-growth 0.25)
fi
echo "soak: $profile palisade at http://127.0.0.1:$port (pid $server_pid), ${seconds}s; results in $out" >&2
{ echo "machine before the soak:"; machine; } | tee "$out/machine.txt" >&2

status=0
RUST_BACKTRACE=0 PALISADE_API_KEY="$tenant" PALISADE_SOAK_PLATFORM_KEY="$platform" PALISADE_SOAK_AGENT_KEY="$agent" \
    "$loadgen" --url "http://127.0.0.1:$port" --workload soak --duration "$seconds" --count 100000000 \
    --server-pid "$server_pid" --soak-db "$data/palisade.db,$data/palisade.db-wal" "${metrics_args[@]}" \
    --json --label "soak-$profile" "${load[@]}" "${extra[@]}" > "$out/soak.json" 2> "$out/soak.txt" || status=$?
cat "$out/soak.txt" >&2
{ echo "machine after the soak:"; machine; } | tee -a "$out/machine.txt" >&2

# SIGTERM: how long the server takes to exit (with the soak's connections gone).
stop_start=$(date +%s.%N)
kill -TERM "$server_pid"
for _ in $(seq 1 600); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$server_pid" 2>/dev/null; then
    echo "  FAIL shutdown: still running 60 s after SIGTERM" >&2
    status=1
else
    echo "  shutdown: exited $(python3 -c "import time; print(f'{time.time() - $stop_start:.1f}')") s after SIGTERM" >&2
fi
server_pid=""
if grep -qiE 'panicked|ERROR' "$out/serve.log"; then
    echo "  server log errors (of $(wc -l < "$out/serve.log") lines):" >&2
    grep -iE 'panicked|ERROR' "$out/serve.log" | head -n 5 >&2
fi
echo "results: $out/soak.json, $out/soak.txt, $out/serve.log" >&2
exit "$status"
