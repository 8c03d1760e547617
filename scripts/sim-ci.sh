#!/usr/bin/env bash
# A time-bounded simulator swarm for CI, seeded from the commit so every commit explores new
# worlds. Each failure prints its REPRODUCE line as soon as it is found; exit status is the
# simulator's (0 only if no seed failed).
#   SIM_SECONDS (default 120): wall-time budget; SIM_SEEDS (default 100000): most seeds to try.
set -euo pipefail
cd "$(dirname "$0")/.."
commit=$(git rev-parse --short=7 HEAD 2>/dev/null || echo 0)
base=$(( (16#${commit}) % 1000000000 ))
count=${SIM_SEEDS:-100000}
export BEAVER_VAULT_COMMIT=$commit
exec .venv/bin/python -m sim --seeds "$base..$((base + count - 1))" --max-seconds "${SIM_SECONDS:-120}"
