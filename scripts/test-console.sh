#!/usr/bin/env bash
# End-to-end tests of the web console (tests/console): the real `palisade serve` driven in Debian's
# headless Chromium by Playwright (playwright-core, which downloads no browser), with axe-core.
# Installs what it needs: Debian's chromium when /usr/bin/chromium is missing (as root), and the
# npm packages of tests/console/package-lock.json (`npm ci`).
#   PALISADE_BIN=/path/to/palisade  use that binary instead of building target/debug/palisade
#   PALISADE_CONSOLE_DOCS=1         also write the screenshots to docs/console/ and the timing to
#                                   docs/benchmarks.md (otherwise screenshots go to target/console/)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

if [ ! -x /usr/bin/chromium ] && [ -z "${CHROMIUM:-}" ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "test-console.sh: /usr/bin/chromium is missing; install Debian's chromium package" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
    else
        echo "test-console.sh: node and npm are needed" >&2
        exit 1
    fi
fi

(cd tests/console && npm ci --no-audit --no-fund --loglevel=error)

if [ -z "${PALISADE_BIN:-}" ]; then
    cargo build -p palisade
    export PALISADE_BIN="$repo/target/debug/palisade"
fi

cd tests/console
exec node --test --test-concurrency=1 --test-reporter=spec console.test.mjs
