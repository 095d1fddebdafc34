#!/usr/bin/env bash
# Palisade's fuzzers (docs/fuzzing.md): coverage-guided runs of every target in fuzz/ with
# cargo-fuzz and libFuzzer, then an nftables check of what the renderer target produced.
#
#   scripts/fuzz.sh [SECONDS]      each target for SECONDS (default 300), its corpus kept in
#                                  fuzz/target/corpus/<target> from one run to the next; then the
#                                  render corpus (minimised) through nft in a network namespace
#   scripts/fuzz.sh --short        the CI step: each target replays its committed corpus and
#                                  regressions, then fuzzes for 5 s from them (a fresh corpus in a
#                                  temp dir), then the committed render corpus through nft
#   options: --only T1,T2          only these targets (bodies rule scalars tags diff render)
#            --asan                build with AddressSanitizer (RUSTC_BOOTSTRAP=1 on stable; slower)
#            --no-nft              skip the nft check
#
# Targets and their invariants are documented in fuzz/src/*.rs. A crash stops that target's run
# (the input is in fuzz/artifacts/<target>/, the log in the run's log dir) and fails the script
# after the other targets ran: copy the input to fuzz/regressions/<target>/ once the bug is fixed.
#
# The nft check (root, iproute2, nftables): in a network namespace this script creates and
# deletes, `nft -c -f` on every full script, then for every diff: load the old tables, apply the
# diff, and compare the tables (`nft -j list ruleset`, handles and element order aside) with those
# the new full script loads.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=300
short=0
only=""
sanitizer=none
nft_check=1
while [ $# -gt 0 ]; do
    case "$1" in
        --short) short=1; seconds=5; shift ;;
        --only) only="$2"; shift 2 ;;
        --asan) sanitizer=address; shift ;;
        --no-nft) nft_check=0; shift ;;
        -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
        [0-9]*) seconds="$1"; shift ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done

all_targets=(bodies rule scalars tags diff render)
if [ -n "$only" ]; then
    IFS=, read -r -a targets <<< "$only"
else
    targets=("${all_targets[@]}")
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install --locked cargo-fuzz
fi

started=$(date +%s)
build_args=(-O -a --sanitizer "$sanitizer")
target_dir=fuzz/target
if [ "$sanitizer" = address ]; then
    # -Zsanitizer on the stable toolchain; its own target dir, so the plain build stays.
    export RUSTC_BOOTSTRAP=1
    target_dir=fuzz/target/asan
    build_args+=(--target-dir target/asan)
fi
(cd fuzz && cargo fuzz build "${build_args[@]}")
bin_dir="$target_dir/x86_64-unknown-linux-gnu/release"
built=$(date +%s)
echo "fuzz build: $((built - started)) s" >&2

run_dir="$(mktemp -d /tmp/palisade-fuzz.XXXXXX)"
if [ "$short" = 1 ]; then
    corpus_root="$run_dir/corpus"
else
    corpus_root=fuzz/target/corpus
fi
ns=""
cleanup() {
    if [ -n "$ns" ]; then ip netns del "$ns" 2>/dev/null || true; fi
    if [ "$short" = 1 ]; then rm -rf "$run_dir"; fi
}
trap cleanup EXIT

summary="$run_dir/summary.txt"
: > "$summary"
failed=()
for t in "${targets[@]}"; do
    dict=fuzz/dict/json.dict
    case "$t" in
        scalars) dict=fuzz/dict/scalars.dict ;;
        diff|render) dict="" ;;
    esac
    mkdir -p "$corpus_root/$t" "fuzz/artifacts/$t" fuzz/regressions/"$t"
    log="$run_dir/$t.log"
    args=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=8192 -print_final_stats=1
          -artifact_prefix="fuzz/artifacts/$t/")
    [ -n "$dict" ] && args+=(-dict="$dict")
    echo "== $t: ${seconds}s" >&2
    # The first directory receives new inputs; the committed corpus and regressions are read only.
    if "$bin_dir/$t" "${args[@]}" "$corpus_root/$t" "fuzz/corpus/$t" "fuzz/regressions/$t" > "$log" 2>&1; then
        status=ok
    else
        status=CRASH
        failed+=("$t")
        grep -E "panicked at|^thread|Test unit written|SUMMARY|ERROR" "$log" | head -n 20 >&2 || true
    fi
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
    rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -n 1)
    cov=$(grep -Eo 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+/[0-9]+[a-zA-Z]*' "$log" | tail -n 1 || true)
    printf '%-8s %-6s %5ss %12s execs %8s/s  %s  peak %s MB  (log %s)\n' \
        "$t" "$status" "$seconds" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${rss:-?}" "$log" | tee -a "$summary" >&2
done

# nft: render every input of the render corpus (minimised after a long run), check each script in
# a namespace, apply each diff and compare with the new tables.
if [ "$nft_check" = 1 ] && [[ " ${targets[*]} " == *" render "* ]]; then
    if [ "$(id -u)" != 0 ] || ! command -v nft >/dev/null || ! command -v ip >/dev/null; then
        echo "nft check skipped: needs root, nft and ip" | tee -a "$summary" >&2
    else
        inputs=(fuzz/corpus/render fuzz/regressions/render)
        if [ "$short" = 0 ]; then
            mkdir -p "$run_dir/render-min"
            "$bin_dir/render" -merge=1 "$run_dir/render-min" "$corpus_root/render" > "$run_dir/render-merge.log" 2>&1
            inputs+=("$run_dir/render-min")
        fi
        scripts="$run_dir/nft"
        mkdir -p "$scripts"
        PALISADE_FUZZ_NFT_OUT="$scripts" "$bin_dir/render" -runs=0 "${inputs[@]}" > "$run_dir/render-dump.log" 2>&1
        ns="palisade-fuzz-$$"
        ip netns add "$ns"
        # shellcheck disable=SC2016
        ip netns exec "$ns" bash -c '
            cd "$1"
            bad=0; checked=0; diffs=0
            for f in *.old.nft *.new.nft; do
                [ -e "$f" ] || continue
                checked=$((checked + 1))
                if ! nft -c -f "$f" 2> "$f.err"; then bad=$((bad + 1)); echo "nft -c refuses $1/$f: $(head -c 400 "$f.err")"; fi
            done
            for d in *.diff.nft; do
                [ -e "$d" ] || continue
                base="${d%.diff.nft}"
                diffs=$((diffs + 1))
                nft flush ruleset
                if nft -f "$base.old.nft" 2> "$d.err" && nft -f "$d" 2>> "$d.err"; then
                    nft -j list ruleset > "$base.after-diff.json"
                else
                    bad=$((bad + 1)); echo "applying $1/$d to $base.old.nft fails: $(head -c 400 "$d.err")"
                fi
                nft flush ruleset
                nft -f "$base.new.nft" 2>/dev/null && nft -j list ruleset > "$base.after-new.json"
            done
            nft flush ruleset
            echo "nft: $checked full scripts checked, $diffs diffs applied, $bad refused"
            [ "$bad" = 0 ]
        ' nft-check "$scripts" | tee -a "$summary" >&2 || failed+=("nft")
        if ! python3 - "$scripts" <<'EOF' | tee -a "$summary" >&2; then failed+=("nft-diff"); fi
# The tables after old + diff must be those the new full script loads (handles, element order aside).
import glob, json, os, sys

def norm(path):
    objects, rules = [], {}
    try:
        items = json.load(open(path))["nftables"]
    except (OSError, ValueError, KeyError) as e:  # `nft list` failed (it aborts on some rulesets)
        return ("unreadable", str(e))
    for item in items:
        (kind, body), = item.items()
        if kind == "metainfo":
            continue
        body = {k: v for k, v in body.items() if k != "handle"}
        if kind == "rule":
            rules.setdefault((body["family"], body["table"], body["chain"]), []).append(json.dumps(body, sort_keys=True))
            continue
        if "elem" in body:
            body["elem"] = sorted(json.dumps(e, sort_keys=True) for e in body["elem"])
        objects.append(kind + json.dumps(body, sort_keys=True))
    return sorted(objects), rules

bad = compared = 0
for after in sorted(glob.glob(os.path.join(sys.argv[1], "*.after-diff.json"))):
    new = after.replace(".after-diff.json", ".after-new.json")
    compared += 1
    if not os.path.exists(new) or norm(after) != norm(new):
        bad += 1
        print(f"diff applied to old != new: {after} vs {new}")
print(f"nft: {compared} diffs compared with the new tables, {bad} differ")
sys.exit(1 if bad else 0)
EOF
    fi
fi

echo >&2
echo "fuzz runs ($(date -u +%FT%TZ), $(($(date +%s) - started)) s in all, build $((built - started)) s, sanitizer $sanitizer):" >&2
cat "$summary" >&2
if [ "${#failed[@]}" -gt 0 ]; then
    echo "FAILED: ${failed[*]} (inputs in fuzz/artifacts/, logs and scripts in $run_dir)" >&2
    trap - EXIT
    [ -n "$ns" ] && ip netns del "$ns" 2>/dev/null || true
    exit 1
fi
echo "fuzzing passed" >&2
