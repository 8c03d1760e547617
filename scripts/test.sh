#!/usr/bin/env bash
# The whole check, as CI runs it: set up the environment, lint, type-check, run the tests.
# Every step runs even if an earlier one failed; the exit status is non-zero if any failed.
# Extra arguments go to pytest, e.g.: bash scripts/test.sh -k config
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-env.sh || exit 1

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
step mypy .venv/bin/mypy --strict src/beaver_vault
# pytest's exit 5 (no tests collected) counts as a failure like any other non-zero exit.
step pytest .venv/bin/pytest -q -m "not slow" "$@"

# --- time-bounded opt-in samples --------------------------------------------------------------
# >>> Longer checks that still fit in CI go here, each under `timeout`, for example:
# >>>   step sim timeout 300 .venv/bin/python -m sim --seeds 20
# >>> Set BEAVER_VAULT_SLOW=1 to also run the tests marked slow.
if [[ "${BEAVER_VAULT_SLOW:-0}" == 1 ]]; then
    step slow-tests timeout 1800 .venv/bin/pytest -q -m slow
fi
# <<<

if ((${#failed[@]})); then
    printf '\nFAILED: %s\n' "${failed[*]}" >&2
    exit 1
fi
printf '\nall checks passed\n' >&2
