#!/usr/bin/env bash
# The whole check, as CI runs it: set up the environment, lint, type-check, run the tests.
# Every step runs even if an earlier one failed; the exit status is non-zero if any failed.
# Extra arguments go to pytest, e.g.: bash scripts/test.sh -k config
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-env.sh || exit 1
# The web UI's browser tests drive Debian's chromium: install it once when missing (needs root,
# as on CI). Without it those tests fail and say how to install it.
[[ -x /usr/bin/chromium ]] || bash scripts/install-browser.sh || echo "test.sh: no chromium; the browser tests will fail" >&2

failed=()
step() {
    local name=$1
    shift
    printf '\n=== %s: %s\n' "$name" "$*" >&2
    "$@"
    local rc=$?
    if ((rc != 0)); then
        printf '=== %s FAILED (exit %d)\n' "$name" "$rc" >&2
        failed+=("$name")
    fi
}

step ruff .venv/bin/ruff check .
step mypy .venv/bin/mypy --strict src/beaver_vault sim jepsen_like
# pytest's exit 5 (no tests collected) counts as a failure like any other non-zero exit.
step pytest .venv/bin/pytest -q -m "not slow" "$@"

# --- time-bounded samples ---------------------------------------------------------------------
# >>> Longer checks that still fit in CI go here, each under `timeout`.
# A simulator swarm whose seeds derive from the commit (so every commit explores new worlds, and
# a failure prints its REPRODUCE line); SIM_SEEDS overrides the count, SIM_SEEDS=0 skips it.
if [[ -f sim/__main__.py && "${SIM_SEEDS:-200}" != 0 ]]; then
    base=$((16#$(git rev-parse --short=7 HEAD 2>/dev/null || echo 0)))
    step sim timeout 300 .venv/bin/python -m sim --seeds "$base..$((base + ${SIM_SEEDS:-200} - 1))" --max-seconds 120
fi
# One bounded Jepsen-like run of real processes under combined faults (seeded from the commit;
# ~40-60 s). JEPSEN_CI=0 skips it; the full matrix is the opt-in scripts/jepsen-matrix.sh.
if [[ "${JEPSEN_CI:-1}" != 0 ]]; then
    step jepsen timeout 120 bash scripts/jepsen-ci.sh
fi
# Set BEAVER_VAULT_SLOW=1 to also run the tests marked slow.
if [[ "${BEAVER_VAULT_SLOW:-0}" == 1 ]]; then
    step slow-tests timeout 1800 .venv/bin/pytest -q -m slow
fi
# <<<

if ((${#failed[@]})); then
    printf '\nFAILED: %s\n' "${failed[*]}" >&2
    exit 1
fi
printf '\nall checks passed\n' >&2
