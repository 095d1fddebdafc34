#!/usr/bin/env bash
# Fails when docs/openapi.json differs from what the built binary prints with `palisade openapi`.
# Build first (`cargo build -p palisade`); PALISADE_BIN overrides the binary (default target/debug/palisade).
# The document is derived from the handlers (#[utoipa::path], ToSchema; crates/api/src/openapi.rs).
# To refresh the file after changing a handler, a DTO or the routes:
#   cargo run -q -p palisade -- openapi > docs/openapi.json
set -euo pipefail
cd "$(dirname "$0")/.."

bin="${PALISADE_BIN:-target/debug/palisade}"
committed="docs/openapi.json"

if [[ ! -x "$bin" ]]; then
    echo "check-openapi: no executable at $bin; run 'cargo build -p palisade' or set PALISADE_BIN" >&2
    exit 2
fi
if [[ ! -f "$committed" ]]; then
    echo "check-openapi: $committed is missing; generate it with: cargo run -q -p palisade -- openapi > $committed" >&2
    exit 1
fi

generated="$(mktemp "${TMPDIR:-/tmp}/palisade-openapi.XXXXXX.json")"
trap 'rm -f "$generated"' EXIT

if ! "$bin" openapi >"$generated"; then
    echo "check-openapi: '$bin openapi' failed" >&2
    exit 2
fi

if ! diff -u --label "$committed (committed)" --label "$bin openapi (generated)" "$committed" "$generated"; then
    echo >&2
    echo "check-openapi: $committed is out of date with the code (diff above)." >&2
    echo "Regenerate it with: cargo run -q -p palisade -- openapi > $committed" >&2
    exit 1
fi
echo "check-openapi: $committed is up to date"
