#!/usr/bin/env bash
# Palisade's API benchmarks (docs/benchmarks.md, "API load"): builds release binaries, starts
# `palisade serve` on a fresh data dir on 127.0.0.1, creates an API key, runs the load generator's
# workloads W1 (c=1 and c=16), W2, W3, W4, W5, the list-scaling run (100 of 1,000 groups vs 100 of
# 100,000 groups of 10 rules) and the resident memory of serve with those 100,000 groups, prints a
# table and writes every result as JSON lines; then stops the server.
#
#   scripts/bench.sh                          SQLite (the embedded default)
#   scripts/bench.sh --database-url postgres://postgres@127.0.0.1:5432/palisade_bench
#                                             PostgreSQL (the database is dropped and created anew),
#                                             then the same workloads on two nodes round-robin
#   options: --duration S   seconds per workload (default 10)
#            --quick        short runs, no 100,000-group step (a smoke test of the harness)
#            --no-big       skip the 100,000-group list/RSS step
#            --nodes N      nodes for the multi-node step with --database-url (default 2; 1 = skip)
#            --out DIR      where results.jsonl and the server logs go (default: a temp dir)
#            --skip-build   use the binaries already in target/release
#            --fair         only the fairness run (issue 12, docs/benchmarks.md "Fair CPU"): one
#                           tenant's verdict, list and create loops against another tenant's GET
#                           and /healthz latency, for twice --duration
#            --agents N     only the region simulation (issue 16, docs/benchmarks.md "Agents"): N
#                           simulated agents, one agent key each, long-polling while
#                           --agent-writes writes (default 100) at --agent-rate per second (default
#                           10) each change one host's group; the long-polls wait 300 s, so an
#                           unaffected agent is answered only if something wakes it
#            --no-agents    with --agents: the same setup and writes with no agent polling (the
#                           baseline for the server's CPU per write)
#            --scale-seed G only the scale seeding (docs/benchmarks.md "Scale seeding"): G groups of
#                           10 rules, G/10 ports on G/200 hosts, written by `palisade-loadgen
#                           seed-file` and loaded by `palisade import`; prints time and size
#            --bin-dir DIR  where the binaries are (default target/release)
# Only loopback addresses are ever loaded; each run is bounded by count and time.
set -euo pipefail
cd "$(dirname "$0")/.."

duration=10
database_url=""
quick=0
big=1
nodes=2
out=""
build=1
fair=0
agents=0
agent_writes=100
agent_rate=10
agent_flags=()
scale_seed=0
bin_dir=target/release
while [ $# -gt 0 ]; do
    case "$1" in
        --duration) duration="$2"; shift 2 ;;
        --database-url) database_url="$2"; shift 2 ;;
        --quick) quick=1; big=0; duration=2; shift ;;
        --no-big) big=0; shift ;;
        --nodes) nodes="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        --skip-build) build=0; shift ;;
        --fair) fair=1; shift ;;
        --agents) agents="$2"; shift 2 ;;
        --agent-writes) agent_writes="$2"; shift 2 ;;
        --agent-rate) agent_rate="$2"; shift 2 ;;
        --no-agents) agent_flags+=(--no-agents); shift ;;
        --scale-seed) scale_seed="$2"; shift 2 ;;
        --bin-dir) bin_dir="$2"; shift 2 ;;
        -h|--help) sed -n '2,29p' "$0"; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done

if [ "$build" = 1 ]; then
    # Two invocations on purpose: building them together would unify features (hyper's client)
    # into the server's build and rebuild it differently from scripts/serve.sh.
    cargo build --release --locked -p palisade
    cargo build --release --locked -p palisade-loadgen
fi
bin="$bin_dir/palisade"
loadgen="$bin_dir/palisade-loadgen"

work="$(mktemp -d /tmp/palisade-bench.XXXXXX)"
out="${out:-$work}"
mkdir -p "$out"
results="$out/results.jsonl"
: > "$results"
pids=()

cleanup() {
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do # not our children (started in $(...)): poll until gone
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    done
    rm -rf "$work/data"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Quotas off: the runs create tens of thousands of groups in one project (the default quota is 10,000).
config="$work/palisade.toml"
printf '[quotas]\nsecurity_group_count = -1\nsecurity_group_rule_count = -1\n' > "$config"

db_args=()
db_comm=()
label=sqlite
if [ -n "$database_url" ]; then
    label=postgres
    dbname="${database_url##*/}"
    dbname="${dbname%%\?*}"
    admin="${database_url%/*}/postgres"
    psql -q "$admin" -c "DROP DATABASE IF EXISTS \"$dbname\"" -c "CREATE DATABASE \"$dbname\""
    db_args=(--database-url "$database_url")
    db_comm=(--db-comm postgres) # the load generator also reports PostgreSQL's CPU per operation
else
    db_args=(--data-dir "$work/data")
fi
if ! "$bin" migrate --config "$config" "${db_args[@]}" >/dev/null 2>&1; then
    echo "this palisade does not take [quotas] in its config; running without" >&2
    : > "$config"
fi

if [ "$scale_seed" -gt 0 ]; then
    # Into the empty database migrate just made; nothing goes through the API.
    "$loadgen" seed-file --groups "$scale_seed" --rules 10 --ports $((scale_seed / 10)) \
        --hosts $((scale_seed / 200 > 0 ? scale_seed / 200 : 1)) > "$work/seed.jsonl"
    started=$(date +%s.%N)
    "$bin" import --config "$config" "${db_args[@]}" --input "$work/seed.jsonl"
    seconds=$(echo "$(date +%s.%N) - $started" | bc)
    if [ -n "$database_url" ]; then
        psql -q "$database_url" -c "VACUUM (ANALYZE)" >/dev/null
        bytes=$(psql -Atq "$database_url" -c "SELECT pg_database_size(current_database())")
    else
        bytes=$(cat "$work"/data/palisade.db* | wc -c)
    fi
    echo "imported $scale_seed groups of 10 rules in $seconds s; database $((bytes / 1000000)) MB ($label)" >&2
    printf '{"workload":"scale-seed","label":"%s","groups":%s,"rules_per_group":10,"import_s":%s,"bytes":%s}\n' \
        "$label" "$scale_seed" "$seconds" "$bytes" >> "$results"
    exit 0
fi

if [ "$agents" -gt 0 ]; then
    # One connection per agent, on both sides: the server's connection limit is 3/4 of its files.
    ulimit -n "$(ulimit -Hn)"
fi

start_server() { # name -> prints the port; the pid goes into pids[] via a file
    local name="$1" port
    port="$(free_port)"
    # The per-key rate and unfinished-task limits are policy, not capacity: off, so the load
    # generator's one key measures the server (variables: builds before the limits ignore them).
    PALISADE_RATE_LIMIT_READS=0 PALISADE_RATE_LIMIT_WRITES=0 PALISADE_MAX_TASKS_PER_CLIENT=0 \
    RUST_LOG=warn "$bin" serve --config "$config" "${db_args[@]}" --listen "127.0.0.1:$port" --no-bootstrap-key \
        > "$out/$name.log" 2>&1 &
    echo $! > "$work/$name.pid"
    for _ in $(seq 1 100); do
        if curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; then
            echo "$port"
            return 0
        fi
        sleep 0.1
    done
    echo "palisade serve did not start; see $out/$name.log" >&2
    cat "$out/$name.log" >&2
    return 1
}

port="$(start_server node1)"
pids+=("$(cat "$work/node1.pid")")
server_pid="${pids[0]}"
token="$("$bin" keys create --config "$config" "${db_args[@]}" --name bench | tail -n 1)"
url="http://127.0.0.1:$port"
echo "palisade ($label) at $url, pid $server_pid; results in $results" >&2

if [ "$fair" = 1 ]; then
    victim="$("$bin" keys create --config "$config" "${db_args[@]}" --client-id 2 --name bench-victim | tail -n 1)"
    platform="$("$bin" keys create --config "$config" "${db_args[@]}" --role platform --name bench-platform | tail -n 1)"
    PALISADE_API_KEY="$token" PALISADE_VICTIM_KEY="$victim" PALISADE_PLATFORM_KEY="$platform" "$loadgen" --url "$url" \
        --project 1 --region 1 --workload fair --duration "$((duration * 2))" --server-pid "$server_pid" --json \
        --label "$label-fair" >> "$results"
    exit 0
fi

if [ "$agents" -gt 0 ]; then
    platform="$("$bin" keys create --config "$config" "${db_args[@]}" --role platform --name bench-platform | tail -n 1)"
    for i in $(seq 0 $((agents - 1))); do # HOST TOKEN lines, an agent key per host
        echo "bench-h$i $("$bin" keys create --config "$config" "${db_args[@]}" --role agent --host "bench-h$i" \
            --name "bench-agent-$i" | tail -n 1)"
    done > "$work/agent-tokens"
    PALISADE_API_KEY="$token" PALISADE_PLATFORM_KEY="$platform" "$loadgen" --url "$url" --project 31 --region 1 \
        --workload agents --hosts "$agents" --agent-token-file "$work/agent-tokens" --writes "$agent_writes" \
        --agent-wait 300 "${agent_flags[@]}" \
        --write-rate "$agent_rate" --duration "$(echo "$agent_writes / $agent_rate + 10" | bc)" --server-pid "$server_pid" --json \
        --label "$label-agents-$agents" >> "$results"
    exit 0
fi

count=1000000
[ "$quick" = 1 ] && count=2000

# run LABEL PROJECT ARGS... : one load-generator run, JSON appended to results.jsonl.
run() {
    local run_label="$1" project="$2"
    shift 2
    local server_pids
    server_pids="$(IFS=,; echo "${pids[*]}")"
    if [ -n "$database_url" ]; then
        # Each run starts from a vacuumed, analysed database, as autovacuum would keep it (the
        # PostgreSQL on the CI/developer machines runs with autovacuum off).
        psql -q "$database_url" -c "VACUUM (ANALYZE)" >/dev/null
    fi
    PALISADE_API_KEY="$token" "$loadgen" --url "$url" --project "$project" --region 1 --server-pid "$server_pids" \
        "${db_comm[@]}" --duration "$duration" --json --label "$run_label" "$@" >> "$results"
}



run "$label" 1 --workload W1 --concurrency 1 --count "$count"
run "$label" 2 --workload W1 --concurrency 16 --count "$count"
run "$label" 3 --workload W2 --concurrency 16 --count "$count"
run "$label" 4 --workload W3 --concurrency 16 --count "$count" --seed-groups 1000
run "$label" 5 --workload W4 --concurrency 16 --count "$count" --groups 1000
w5_count=$([ "$quick" = 1 ] && echo 2000 || echo 40000)
run "$label" 6 --workload W5 --concurrency 16 --count "$w5_count"

if [ -n "$database_url" ] && [ "$nodes" -gt 1 ]; then
    urls="$url"
    for n in $(seq 2 "$nodes"); do
        p="$(start_server "node$n")"
        pids+=("$(cat "$work/node$n.pid")")
        urls="$urls,http://127.0.0.1:$p"
    done
    one_url="$url"
    url="$urls"
    multi="$label-${nodes}-nodes"
    run "$multi" 21 --workload W1 --concurrency 1 --count "$count"
    run "$multi" 22 --workload W1 --concurrency 16 --count "$count"
    run "$multi" 23 --workload W2 --concurrency 16 --count "$count"
    run "$multi" 24 --workload W3 --concurrency 16 --count "$count" --seed-groups 1000
    run "$multi" 25 --workload W4 --concurrency 16 --count "$count" --groups 1000
    run "$multi" 26 --workload W5 --concurrency 16 --count "$w5_count"
    url="$one_url"
fi


rss() { awk '/^(VmRSS|VmHWM)/ {printf "%s %d MB  ", $1, $2/1024}' "/proc/$1/status"; }

if [ "$big" = 1 ]; then
    # List scaling: 100 groups of a project holding 1,000 groups, then of one holding 100,000
    # (both groups of 10 rules), and the memory of serve with the 100,000.
    run "$label-1k-groups-10-rules" 10 --workload W3 --concurrency 16 --count "$count" --seed-groups 1000 --seed-rules 10
    echo "RSS before seeding 100,000 groups: $(rss "$server_pid")" >&2
    PALISADE_API_KEY="$token" "$loadgen" --url "$url" --project 11 --region 1 --workload seed --concurrency 16 \
        --count 100000 --duration 600 --seed-rules 10 --json --label "$label-seed-100k" >> "$results"
    run "$label-100k-groups-10-rules" 11 --workload W3 --concurrency 16 --count "$count" --seed-groups 100000 --seed-rules 10
    rss_line="$(rss "$server_pid")"
    echo "RSS with 100,000 groups of 10 rules (after listing them): $rss_line" >&2
    printf '{"workload":"rss","label":"%s-100k-groups-10-rules","status":"%s"}\n' "$label" "$rss_line" >> "$results"
fi

echo
python3 - "$results" <<'EOF'
import json, sys
print(f"{'workload':<9}{'conc':>5}{'ops':>9}{'errors':>7}{'ops/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>10}{'srv us/op':>10}{'db us/op':>9}{'lg us/op':>9}  label")
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r.get("workload") == "rss":
        print(f"{'rss':<9}{'':>85}  {r['label']}: {r['status']}")
        continue
    print(f"{r['workload']:<9}{r['concurrency']:>5}{r['ops']:>9}{r['errors']:>7}{r['ops_per_s']:>9.0f}"
          f"{r['p50_ms']:>9.3f}{r['p99_ms']:>9.3f}{r['max_ms']:>10.3f}"
          f"{r.get('server_cpu_us_per_op', 0):>10.0f}{r.get('db_cpu_us_per_op', 0):>9.0f}{r.get('client_cpu_us_per_op', 0):>9.0f}  {r['label']}")
EOF
