#!/usr/bin/env bash
# Build Palisade (release) and serve the API on its embedded SQLite default.
# Extra arguments go to `palisade serve` (e.g. --listen 0.0.0.0:8080 --data-dir /var/lib/palisade).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null; then
    echo "Palisade needs a Rust toolchain (cargo 1.95 or newer): https://rustup.rs" >&2
    exit 1
fi
cargo build --release --locked -p palisade
exec target/release/palisade serve "$@"
