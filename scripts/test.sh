#!/usr/bin/env bash
# Every test Palisade has: unit, property and store-conformance tests, the API suites over a real
# socket (SQLite and PostgreSQL), the crash and multi-node tests, the data-plane tests in network
# namespaces, the OpenAPI drift check, the official Python SDK suite, and the web console in a
# real browser.
# Installs what the tests need (PostgreSQL running, nftables/conntrack/iproute2, a Python venv).
set -euo pipefail
cd "$(dirname "$0")/.."

# PostgreSQL at 127.0.0.1:5432 (trust auth, database `test`).
if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    if command -v pg_ctlcluster >/dev/null; then
        pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
        for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
    fi
fi

# Data-plane tools (the tests load real nftables rulesets into namespaces they create).
if [ "$(id -u)" = 0 ] && { ! command -v nft >/dev/null || ! command -v conntrack >/dev/null || ! command -v ip >/dev/null; }; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nftables conntrack iproute2 >/dev/null
fi

if ! command -v cargo-nextest >/dev/null; then
    cargo install --locked cargo-nextest
fi

cargo fmt --all --check
cargo build --locked --workspace --all-targets
cargo nextest run --locked --workspace --no-fail-fast
# The API suite again, every test on its own fresh PostgreSQL database (the crash tests drive the
# binary's embedded SQLite and ran above).
PALISADE_TEST_BACKEND=postgres cargo nextest run --locked -p palisade --test api --no-fail-fast -E 'not test(/crash/)'
scripts/check-openapi.sh
# The fuzz targets (fuzz/, not a workspace member; cargo-fuzz): each replays its committed corpus
# and regressions, then fuzzes for 5 s; the renderer's outputs go through nft in a namespace.
scripts/fuzz.sh --short
# 45 s of mixed load on the debug build, then the soak's checks (docs/benchmarks.md, "Soak").
scripts/soak.sh --short --debug
scripts/test-sdk.sh
# The web console in headless Chromium (installs chromium and the npm packages it needs).
scripts/test-console.sh
echo "all tests passed"
