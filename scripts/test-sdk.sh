#!/usr/bin/env bash
# Run the gcore Python SDK acceptance tests (tests/sdk) against a locally started palisade.
#   PALISADE_BIN=/path/to/palisade  use that binary instead of building target/debug/palisade
#   extra arguments are passed to pytest (e.g. -k tasks -x)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

venv="$repo/.venv-sdk"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r tests/sdk/requirements.txt

if [ -z "${PALISADE_BIN:-}" ]; then
    cargo build -p palisade
    export PALISADE_BIN="$repo/target/debug/palisade"
fi

exec "$venv/bin/python" -m pytest -q tests/sdk "$@"
