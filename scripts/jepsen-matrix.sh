#!/usr/bin/env bash
# The full Jepsen-like matrix (opt-in, ~15-20 min): 3 and 5 nodes x fault mixes (single kinds,
# pairs, everything at once with up to 3 concurrent kinds), JEPSEN_MATRIX_SECONDS (default 45)
# of workload each, then a Markdown table (runs, nodes, faults, ops, verdict, availability) in
# $JEPSEN_OUT/matrix.md. Needs root with ip, nft and libfaketime (scripts/setup-env.sh as root).
#   JEPSEN_MATRIX_CELLS=1,3     only those cells;  JEPSEN_MATRIX_SEED=N  another schedule
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-env.sh || exit 1
out=${JEPSEN_OUT:-$(mktemp -d -t jepsen-matrix-XXXXXX)}
echo "jepsen-matrix: output $out" >&2
exec .venv/bin/python -m jepsen_like.matrix --seconds "${JEPSEN_MATRIX_SECONDS:-45}" \
    --seed "${JEPSEN_MATRIX_SEED:-1}" --out "$out" --cells "${JEPSEN_MATRIX_CELLS:-}"
